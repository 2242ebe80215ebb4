//! Configuration from environment variables, for both operators: the one way their config
//! code reads the environment, so every failure names the variable and what to do about it,
//! and `docs/configuration.md` can be checked against the names passed to these methods
//! (`operators/common/tests/configuration_reference.rs`).
//!
//! A variable that is unset, empty or only whitespace counts as unset. Names are given as
//! string literals at the call site; per-cluster (or other per-item) variables go through
//! [`Env::scope`] with a pattern such as `"CRM_CLUSTER_<NAME>_"`.
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A value start-up cannot use: the variable, what it held (empty when the problem is that it
/// is missing or conflicts with another), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub problem: String,
}

impl ConfigError {
    /// A problem with a variable as a whole (missing, conflicting, out of the allowed set).
    pub fn new(variable: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::with_value(variable, "", problem)
    }

    /// A problem with the value a variable holds.
    pub fn with_value(
        variable: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Self {
            variable: variable.into(),
            value: value.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(
                f,
                "invalid configuration: {}: {}",
                self.variable, self.problem
            )
        } else {
            write!(
                f,
                "invalid configuration: {}={:?}: {}",
                self.variable, self.value, self.problem
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// A view of the environment (or of any map of variables, for tests).
#[derive(Debug, Clone)]
pub struct Env<'a> {
    vars: &'a HashMap<String, String>,
    /// Put before every name read through this view (see [`Env::scope`]).
    prefix: String,
}

impl<'a> Env<'a> {
    pub fn new(vars: &'a HashMap<String, String>) -> Self {
        Self {
            vars,
            prefix: String::new(),
        }
    }

    /// A view whose names are prefixed by `pattern` with `<NAME>` replaced by `name` in upper
    /// case, other characters than letters and digits as `_`: with the pattern
    /// `"CRM_CLUSTER_<NAME>_"`, the cluster `edge-eu` reads `URL` from
    /// `CRM_CLUSTER_EDGE_EU_URL`. Errors name the full variable.
    pub fn scope(&self, pattern: &str, name: &str) -> Env<'a> {
        Env {
            vars: self.vars,
            prefix: format!("{}{}", self.prefix, Self::scope_prefix(pattern, name)),
        }
    }

    /// The prefix [`Env::scope`] reads under.
    pub fn scope_prefix(pattern: &str, name: &str) -> String {
        let upper: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        pattern.replace("<NAME>", &upper)
    }

    /// The full name of a variable read through this view.
    pub fn variable(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The value, unless unset or blank.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let value = if self.prefix.is_empty() {
            self.vars.get(name)
        } else {
            self.vars.get(&self.variable(name))
        };
        value.map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The value, or `default` when unset or blank.
    pub fn get_or<'b>(&self, name: &str, default: &'b str) -> &'b str
    where
        'a: 'b,
    {
        self.get(name).unwrap_or(default)
    }

    /// The value as an owned string, unless unset or blank.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(String::from)
    }

    /// The value as a file path, unless unset or blank.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }

    /// The value; when unset, an error saying why it is needed (`problem`).
    pub fn require(&self, name: &str, problem: &str) -> Result<&'a str, ConfigError> {
        self.get(name).ok_or_else(|| self.error(name, "", problem))
    }

    /// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off` (any case); `None` when unset.
    pub fn optional_flag(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(self.error(name, raw, "use true or false")),
        }
    }

    /// A flag (see [`Env::optional_flag`]), `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.optional_flag(name)?.unwrap_or(default))
    }

    /// A number of type `T` (surrounding spaces allowed); `None` when unset.
    pub fn optional_number<T: FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        raw.trim()
            .parse()
            .map(Some)
            .map_err(|_| self.error(name, raw, "must be a whole number in range"))
    }

    /// A number of type `T`, `default` when unset.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.optional_number(name)?.unwrap_or(default))
    }

    /// A duration given in whole seconds, `default_secs` when unset.
    pub fn seconds(&self, name: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.number(name, default_secs).map(Duration::from_secs)
    }

    /// Like [`Env::seconds`], but 0 is refused.
    pub fn positive_seconds(&self, name: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        match self.seconds(name, default_secs)? {
            Duration::ZERO => Err(self.error(
                name,
                self.get(name).unwrap_or("0"),
                "must be at least 1 second",
            )),
            d => Ok(d),
        }
    }

    /// An error about variable `name` of this view holding `value` (empty: not about a value).
    pub fn error(&self, name: &str, value: &str, problem: &str) -> ConfigError {
        ConfigError::with_value(self.variable(name), value, problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn blank_is_unset_and_defaults_apply() {
        let vars = vars(&[("A", ""), ("B", "  "), ("C", "x")]);
        let env = Env::new(&vars);
        assert_eq!(
            (env.get("A"), env.get("B"), env.get("C")),
            (None, None, Some("x"))
        );
        assert_eq!(env.get_or("B", "d"), "d");
        assert_eq!(env.number("B", 7u16), Ok(7));
        assert_eq!(env.flag("MISSING", true), Ok(true));
        assert_eq!(env.optional_flag("A"), Ok(None));
        assert_eq!(env.path("C"), Some(PathBuf::from("x")));
    }

    #[test]
    fn flags_and_numbers_parse_or_name_the_variable() {
        let vars = vars(&[
            ("ON", "Yes"),
            ("OFF", " 0 "),
            ("BAD", "maybe"),
            ("PORT", " 8080 "),
            ("BIG", "70000"),
        ]);
        let env = Env::new(&vars);
        assert_eq!(env.flag("ON", false), Ok(true));
        assert_eq!(env.flag("OFF", true), Ok(false));
        let err = env.flag("BAD", false).unwrap_err();
        assert_eq!(
            (err.variable.as_str(), err.value.as_str()),
            ("BAD", "maybe")
        );
        assert_eq!(
            err.to_string(),
            "invalid configuration: BAD=\"maybe\": use true or false"
        );
        assert_eq!(env.number::<u16>("PORT", 1), Ok(8080));
        let err = env.number::<u16>("BIG", 1).unwrap_err();
        assert_eq!(err.variable, "BIG");
        assert!(err.problem.contains("whole number"), "{err}");
        assert_eq!(env.optional_number::<u16>("NONE"), Ok(None));
    }

    #[test]
    fn seconds_and_required_values() {
        let vars = vars(&[("ZERO", "0"), ("TEN", "10")]);
        let env = Env::new(&vars);
        assert_eq!(env.seconds("ZERO", 5), Ok(Duration::ZERO));
        assert_eq!(env.positive_seconds("TEN", 5), Ok(Duration::from_secs(10)));
        assert_eq!(env.positive_seconds("UNSET", 5), Ok(Duration::from_secs(5)));
        assert_eq!(
            env.positive_seconds("ZERO", 5).unwrap_err().variable,
            "ZERO"
        );
        let err = env.require("URL", "give the URL").unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: URL: give the URL");
    }

    #[test]
    fn scopes_prefix_names_and_errors() {
        assert_eq!(
            Env::scope_prefix("CRM_CLUSTER_<NAME>_", "edge-eu.1"),
            "CRM_CLUSTER_EDGE_EU_1_"
        );
        let vars = vars(&[
            ("CRM_CLUSTER_EDGE_EU_URL", "http://e:1"),
            ("CRM_CLUSTER_EDGE_EU_TIMEOUT", "soon"),
        ]);
        let env = Env::new(&vars);
        let cluster = env.scope("CRM_CLUSTER_<NAME>_", "edge-eu");
        assert_eq!(cluster.get("URL"), Some("http://e:1"));
        let err = cluster.number::<u32>("TIMEOUT", 30).unwrap_err();
        assert_eq!(err.variable, "CRM_CLUSTER_EDGE_EU_TIMEOUT");
        assert_eq!(cluster.variable("API_KEY"), "CRM_CLUSTER_EDGE_EU_API_KEY");
    }
}
