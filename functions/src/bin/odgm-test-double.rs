//! A stand-in for ODGM that only reports ready (see the crate documentation).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = oaas_functions::port_from_env("ODGM_HTTP_PORT", 8081)?;
    oaas_functions::serve(oaas_functions::odgm_routes(), port).await?;
    Ok(())
}
