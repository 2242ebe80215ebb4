use super::*;

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn leader_election_is_off_unless_asked_and_its_lease_is_configurable() {
    assert_eq!(parse(&[]).unwrap().leader, None);
    let on = parse(&[
        ("OAAS_PM_LEADER_ELECTION", "true"),
        ("OAAS_PM_NAMESPACE", "ops"),
    ])
    .unwrap();
    let lease = on.leader.unwrap();
    assert_eq!(
        (lease.namespace.as_str(), lease.name.as_str()),
        ("ops", "oaas-pm")
    );
    assert_eq!(lease.duration, std::time::Duration::from_secs(15));
    let err = parse(&[
        ("OAAS_PM_LEADER_ELECTION", "true"),
        ("OAAS_PM_LEASE_DURATION_SECS", "1"),
    ])
    .unwrap_err();
    assert_eq!(err.variable, "OAAS_PM_LEASE_DURATION_SECS");
    let err = parse(&[("OAAS_PM_REST_AUTH", "basic")]).unwrap_err();
    assert_eq!(err.variable, "OAAS_PM_REST_AUTH");
    let err = parse(&[("OAAS_PM_REST_NAMESPACE", "Not_Valid")]).unwrap_err();
    assert_eq!(err.variable, "OAAS_PM_REST_NAMESPACE");
}

/// Variable prefix of a cluster: its name in upper case, other characters as `_`.
fn env_prefix(name: &str) -> String {
    Env::scope_prefix(CLUSTER_VARIABLES, name)
}

fn names(config: &Config) -> Vec<&str> {
    config.clusters.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn nothing_set_means_no_clusters_and_the_default_address() {
    let config = parse(&[]).unwrap();
    assert!(config.clusters.is_empty());
    assert_eq!(
        (config.server_host.as_str(), config.server_port),
        ("127.0.0.1", 8080)
    );
}

#[test]
fn default_url_makes_one_default_cluster() {
    let config = parse(&[
        ("CRM_DEFAULT_URL", "http://crm:8088"),
        ("CRM_DEFAULT_TIMEOUT", "7"),
    ])
    .unwrap();
    assert_eq!(names(&config), ["default"]);
    assert!(config.clusters[0].default);
    assert_eq!(config.clusters[0].timeout_seconds, 7);
}

#[test]
fn json_object_form() {
    let json = r#"{"prod": {"url": "http://crm-prod:8088"}, "staging": {"url": "http://crm-stg:8088", "retry_attempts": 5}}"#;
    let config = parse(&[
        ("CRM_CLUSTERS_JSON", json),
        ("CRM_DEFAULT_CLUSTER", "staging"),
    ])
    .unwrap();
    assert_eq!(names(&config), ["prod", "staging"]);
    assert_eq!(config.clusters[1].retry_attempts, 5);
    assert!(config.clusters[1].default && !config.clusters[0].default);
}

#[test]
fn json_array_form_with_tls() {
    let json = r#"[{"name": "prod", "url": "https://crm-prod:8088", "timeout": 30, "retry_attempts": 3, "tls": {"ca_cert": "/path/ca.pem"}}]"#;
    let config = parse(&[("CRM_CLUSTERS_JSON", json)]).unwrap();
    let tls = config.clusters[0].tls.as_ref().unwrap();
    assert_eq!(tls.ca_cert.as_deref(), Some("/path/ca.pem"));
    assert!(config.clusters[0].default, "first cluster is the default");
}

#[test]
fn json_wins_over_the_list_and_the_default_url() {
    let config = parse(&[
        ("CRM_CLUSTERS_JSON", r#"{"a": {"url": "http://a:1"}}"#),
        ("CRM_CLUSTERS", "b"),
        ("CRM_CLUSTER_B_URL", "http://b:1"),
        ("CRM_DEFAULT_URL", "http://c:1"),
    ])
    .unwrap();
    assert_eq!(names(&config), ["a"]);
}

#[test]
fn list_with_prefixes_and_inferred_tls() {
    let config = parse(&[
        ("CRM_CLUSTERS", "default, prod,edge-eu"),
        ("CRM_CLUSTER_DEFAULT_URL", "http://d:1"),
        ("CRM_CLUSTER_PROD_URL", "https://p:1"),
        ("CRM_CLUSTER_PROD_API_KEY", "secret"),
        ("CRM_CLUSTER_PROD_TIMEOUT", "9"),
        ("CRM_CLUSTER_EDGE_EU_URL", "https://e:1"),
        ("CRM_CLUSTER_EDGE_EU_TLS_CA_CERT_PATH", "/ca.pem"),
    ])
    .unwrap();
    assert_eq!(names(&config), ["default", "prod", "edge-eu"]);
    assert!(config.clusters[0].default, "the cluster named default");
    assert_eq!(config.clusters[1].api_key.as_deref(), Some("secret"));
    assert_eq!(config.clusters[1].timeout_seconds, 9);
    assert!(config.clusters[1].tls.is_none());
    assert_eq!(
        config.clusters[2].tls.as_ref().unwrap().ca_cert.as_deref(),
        Some("/ca.pem")
    );
}

#[test]
fn tls_can_be_turned_off_explicitly() {
    let config = parse(&[
        ("CRM_CLUSTERS", "a"),
        ("CRM_CLUSTER_A_URL", "http://a:1"),
        ("CRM_CLUSTER_A_TLS_CA_CERT_PATH", "/ca.pem"),
        ("CRM_CLUSTER_A_TLS_ENABLED", "false"),
    ])
    .unwrap();
    assert!(config.clusters[0].tls.is_none());
}

#[test]
fn prefixes_uppercase_and_replace_other_characters() {
    assert_eq!(env_prefix("edge-eu.1"), "CRM_CLUSTER_EDGE_EU_1_");
    assert_eq!(resource_name("Edge_EU"), "edge-eu");
}

#[test]
fn mistakes_fail_with_the_variable_named() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("CRM_CLUSTERS_JSON", "{not json")],
            "CRM_CLUSTERS_JSON",
        ),
        (
            vec![("CRM_CLUSTERS_JSON", r#"{"a": {}}"#)],
            "CRM_CLUSTERS_JSON",
        ),
        (
            vec![("CRM_CLUSTERS_JSON", r#"[{"url": "http://a:1"}]"#)],
            "CRM_CLUSTERS_JSON",
        ),
        (
            vec![(
                "CRM_CLUSTERS_JSON",
                r#"{"a": {"url": "http://a:1", "colour": 1}}"#,
            )],
            "CRM_CLUSTERS_JSON",
        ),
        (vec![("CRM_CLUSTERS_JSON", "42")], "CRM_CLUSTERS_JSON"),
        (vec![("CRM_CLUSTERS", "a")], "CRM_CLUSTER_A_URL"),
        (
            vec![
                ("CRM_CLUSTERS", "a b"),
                ("CRM_CLUSTER_A_B_URL", "http://x:1"),
            ],
            "CRM cluster name",
        ),
        (
            vec![(
                "CRM_CLUSTERS_JSON",
                r#"{"a_b": {"url": "http://x:1"}, "a-b": {"url": "http://y:1"}}"#,
            )],
            "CRM cluster name",
        ),
        (
            vec![("CRM_DEFAULT_URL", "crm:8088")],
            "url of cluster \"default\"",
        ),
        (
            vec![
                ("CRM_DEFAULT_URL", "http://x:1"),
                ("CRM_DEFAULT_CLUSTER", "prod"),
            ],
            "CRM_DEFAULT_CLUSTER",
        ),
        (
            vec![
                ("CRM_DEFAULT_URL", "http://x:1"),
                ("CRM_DEFAULT_TIMEOUT", "soon"),
            ],
            "CRM_DEFAULT_TIMEOUT",
        ),
        (
            vec![
                ("CRM_CLUSTERS", "a"),
                ("CRM_CLUSTER_A_URL", "http://a:1"),
                ("CRM_CLUSTER_A_TLS_ENABLED", "maybe"),
            ],
            "CRM_CLUSTER_A_TLS_ENABLED",
        ),
        (vec![("SERVER_PORT", "99999")], "SERVER_PORT"),
    ];
    for (vars, variable) in cases {
        let err = parse(&vars).unwrap_err();
        assert_eq!(err.variable, variable, "{vars:?}: {err}");
    }
}

#[test]
fn the_hub_name_is_optional_and_must_be_a_dns_label() {
    assert_eq!(parse(&[]).unwrap().hub_name, None);
    let named = parse(&[("OAAS_PM_HUB_NAME", "hub-eu")]).unwrap();
    assert_eq!(named.hub_name.as_deref(), Some("hub-eu"));
    for bad in ["Hub", "hub/eu", "-hub"] {
        let err = parse(&[("OAAS_PM_HUB_NAME", bad)]).unwrap_err();
        assert_eq!(err.variable, "OAAS_PM_HUB_NAME", "{bad}");
    }
}

#[test]
fn tls_insecure_reaches_the_cluster_in_both_forms() {
    let listed = parse(&[
        ("CRM_CLUSTERS", "a"),
        ("CRM_CLUSTER_A_URL", "https://a:1"),
        ("CRM_CLUSTER_A_TLS_INSECURE", "true"),
    ])
    .unwrap();
    let tls = listed.clusters[0].tls.as_ref().expect("TLS inferred");
    assert!(tls.insecure && tls.ca_cert.is_none());
    let json = r#"{"b": {"url": "https://b:1", "tls": {"insecure": true}}, "c": {"url": "https://c:1", "tls": {"ca_cert": "/ca.pem"}}}"#;
    let config = parse(&[("CRM_CLUSTERS_JSON", json)]).unwrap();
    assert!(config.clusters[0].tls.as_ref().unwrap().insecure);
    assert!(!config.clusters[1].tls.as_ref().unwrap().insecure);
    let err = parse(&[
        ("CRM_CLUSTERS", "a"),
        ("CRM_CLUSTER_A_URL", "https://a:1"),
        ("CRM_CLUSTER_A_TLS_INSECURE", "sometimes"),
    ])
    .unwrap_err();
    assert_eq!(err.variable, "CRM_CLUSTER_A_TLS_INSECURE");
}

#[test]
fn the_health_cache_ttl_defaults_to_15_seconds() {
    use std::time::Duration;
    assert_eq!(
        parse(&[]).unwrap().rest.health_cache_ttl,
        Duration::from_secs(15)
    );
    let set = parse(&[("CRM_HEALTH_CACHE_TTL", "60")]).unwrap();
    assert_eq!(set.rest.health_cache_ttl, Duration::from_secs(60));
    let err = parse(&[("CRM_HEALTH_CACHE_TTL", "soon")]).unwrap_err();
    assert_eq!(err.variable, "CRM_HEALTH_CACHE_TTL");
}

#[test]
fn server_workers_is_a_positive_thread_count_or_unset() {
    assert_eq!(parse(&[]).unwrap().workers, None);
    assert_eq!(
        parse(&[("SERVER_WORKERS", " 4 ")]).unwrap().workers,
        Some(4)
    );
    for bad in ["0", "-1", "four", "2.5"] {
        let err = parse(&[("SERVER_WORKERS", bad)]).unwrap_err();
        assert_eq!(err.variable, "SERVER_WORKERS", "{bad}");
        assert!(err.problem.contains("at least 1"), "{bad}: {err}");
    }
}

#[test]
fn storage_type_other_than_the_hub_stops_start_up() {
    for fine in ["hub", "Kubernetes", "crd", ""] {
        assert!(parse(&[("STORAGE_TYPE", fine)]).is_ok(), "{fine:?}");
    }
    for other in ["memory", "etcd", "postgres"] {
        let err = parse(&[("STORAGE_TYPE", other)]).unwrap_err();
        assert_eq!(err.variable, "STORAGE_TYPE");
        assert_eq!(err.value, other);
        let message = err.to_string();
        assert!(
            message.contains("hub's Kubernetes API server")
                && message.contains("unset STORAGE_TYPE"),
            "{message}"
        );
    }
}

#[test]
fn the_health_report_interval_defaults_to_a_minute() {
    use std::time::Duration;
    let interval = |vars: &[(&str, &str)]| parse(vars).map(|c| c.health_report_interval);
    assert_eq!(interval(&[]).unwrap(), Duration::from_secs(60));
    let every_check = interval(&[("CRM_HEALTH_REPORT_INTERVAL", "0")]).unwrap();
    assert_eq!(every_check, Duration::ZERO);
    let err = interval(&[("CRM_HEALTH_REPORT_INTERVAL", "-1")]).unwrap_err();
    assert_eq!(err.variable, "CRM_HEALTH_REPORT_INTERVAL");
}
