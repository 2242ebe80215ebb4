//! An OaaS function that echoes its input (see the crate documentation).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = oaas_functions::port_from_env("HTTP_PORT", 8080)?;
    // The CRM names the function in OAAS_FUNCTION_KEY when it renders the Pod; else "echo".
    let name = std::env::var("OAAS_FUNCTION_KEY").unwrap_or_else(|_| "echo".into());
    oaas_functions::serve(oaas_functions::echo_routes(name), port).await?;
    Ok(())
}
