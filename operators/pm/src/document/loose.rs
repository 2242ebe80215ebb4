//! Deserializers for the loosely typed values found in hand-written package files: YAML
//! turns `version: 1.0` and `HTTP_PORT: 8080` into numbers where the model wants strings,
//! and some clients quote numbers (`min_scale: "2"`). Both spellings are accepted.
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// A scalar of any kind, as its text.
struct ScalarText;

impl<'de> Visitor<'de> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        // `1.0` stays "1.0", as the author wrote it, rather than "1".
        Ok(serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()))
    }
}

/// Like [`ScalarText`], but `null` (a YAML key without a value) is no value.
struct OptionalScalarText;

impl<'de> Visitor<'de> for OptionalScalarText {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarText).map(Some)
    }
}

pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(OptionalScalarText)
}

/// `key: value` pairs whose values may be written as numbers or booleans; null is empty.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of names to strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(Seed)?;
                pairs.insert(key, value);
            }
            Ok(pairs)
        }
    }
    struct Seed;
    impl<'de> de::DeserializeSeed<'de> for Seed {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            d.deserialize_any(ScalarText)
        }
    }
    d.deserialize_any(Pairs)
}

/// A value whose `null` (as other OaaS clients write absent lists) means its default.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An optional number that may also be written as a quoted string.
pub fn opt_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    struct Number<T>(PhantomData<T>);
    impl<'de, T: FromStr + TryFrom<u64> + TryFrom<i64>> Visitor<'de> for Number<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number (or one in quotes)")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("{v:?} is not a whole number in range")))
        }
    }
    d.deserialize_option(Number(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Debug)]
    struct Sample {
        #[serde(default, deserialize_with = "super::opt_string")]
        version: Option<String>,
        #[serde(default, deserialize_with = "super::string_map")]
        config: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "super::opt_number")]
        min_scale: Option<u32>,
        #[serde(default, deserialize_with = "super::null_default")]
        targets: Vec<String>,
    }

    #[test]
    fn numbers_and_booleans_become_text_as_written() {
        let s: Sample = serde_yaml::from_str(
            "version: 1.0\nconfig: {PORT: 8080, DEBUG: true, RATIO: 0.5, NAME: x}\nmin_scale: '2'",
        )
        .unwrap();
        assert_eq!(s.version.as_deref(), Some("1.0"));
        assert_eq!(s.config["PORT"], "8080");
        assert_eq!(s.config["DEBUG"], "true");
        assert_eq!(s.config["RATIO"], "0.5");
        assert_eq!(s.config["NAME"], "x");
        assert_eq!(s.min_scale, Some(2));
    }

    #[test]
    fn nulls_are_no_value_and_bad_numbers_say_why() {
        let s: Sample =
            serde_json::from_str(r#"{"version": null, "config": null, "targets": null}"#).unwrap();
        assert_eq!(s.version, None);
        assert!(s.config.is_empty());
        assert!(s.targets.is_empty());
        let err = serde_json::from_str::<Sample>(r#"{"min_scale": "two"}"#).unwrap_err();
        assert!(err.to_string().contains("not a whole number"), "{err}");
        let err = serde_json::from_str::<Sample>(r#"{"min_scale": -1}"#).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
