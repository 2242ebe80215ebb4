//! The images' servers over real loopback sockets.

use std::net::SocketAddr;

async fn start(routes: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });
    addr
}

async fn post(url: String, body: &'static str) -> serde_json::Value {
    let answer = reqwest::Client::new().post(url).body(body).send().await;
    answer.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn echo_answers_invocations_and_health() {
    let addr = start(oaas_functions::echo_routes("Record.echo".into())).await;
    let json = post(format!("http://{addr}/invoke"), r#"{"data": [1, 2]}"#).await;
    assert_eq!(json["function"], "Record.echo");
    assert_eq!(json["output"]["data"][1], 2);

    let text = post(format!("http://{addr}/"), "not json").await;
    assert_eq!(text["output"], "not json");

    let health = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn odgm_test_double_reports_ready_and_stores_nothing() {
    let addr = start(oaas_functions::odgm_routes()).await;
    assert_eq!(
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let other = reqwest::get(format!("http://{addr}/api/class/x/objects/1"))
        .await
        .unwrap();
    assert_eq!(other.status(), 501);
}

#[test]
fn a_port_that_is_not_a_number_is_an_error_naming_the_variable() {
    let err = oaas_functions::parse_port("HTTP_PORT", Some("eighty"), 8080).unwrap_err();
    assert!(err.contains("HTTP_PORT") && err.contains("eighty"), "{err}");
    assert!(oaas_functions::parse_port("HTTP_PORT", Some("0"), 8080).is_err());
    assert_eq!(
        oaas_functions::parse_port("HTTP_PORT", Some("9000"), 8080),
        Ok(9000)
    );
    assert_eq!(
        oaas_functions::parse_port("ODGM_HTTP_PORT", None, 8081),
        Ok(8081)
    );
}
