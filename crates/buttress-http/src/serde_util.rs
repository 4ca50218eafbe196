//! Serde helpers for the HTTP types in configuration structs.

/// A header name as a string.
pub(crate) mod header_name {
    use http::HeaderName;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(name: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderName, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| serde::de::Error::custom(format!("invalid header name {s:?}")))
    }
}

/// A status code as a number.
pub(crate) mod status_code {
    use http::StatusCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(status.as_u16())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StatusCode, D::Error> {
        let n = u16::deserialize(d)?;
        StatusCode::from_u16(n)
            .map_err(|_| serde::de::Error::custom(format!("invalid status code {n}")))
    }
}

/// An optional part of a configuration that can be switched off: `false` is `None`,
/// `true` is the part's defaults, a table is the part itself (its own errors, unknown
/// keys included, reported as they are). `None` serializes as `false`.
pub(crate) mod switch {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<T: Serialize, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => v.serialize(s),
            None => s.serialize_bool(false),
        }
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: Deserialize<'de> + Default,
        D: Deserializer<'de>,
    {
        struct Switch<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for Switch<T> {
            type Value = Option<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`false`, `true` or a table of settings")
            }

            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Option<T>, E> {
                Ok(on.then(T::default))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }

        d.deserialize_any(Switch(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use buttress::Priority;
    use http::StatusCode;

    use crate::classify::{ClassifyConfig, RetrySafety};
    use crate::deadline::{InboundDeadlineConfig, OutboundDeadlineConfig};
    use crate::priority::PriorityConfig;
    use crate::rejection::RejectionConfig;

    #[test]
    fn configs_read_from_plain_data() {
        let c: InboundDeadlineConfig =
            serde_json::from_str(r#"{"header": "x-deadline-ms", "max": "2s"}"#).unwrap();
        assert_eq!(c.header, "x-deadline-ms");
        assert_eq!(c.max, Duration::from_secs(2));
        assert!(c.grpc_timeout, "defaults fill the rest");
        let c: OutboundDeadlineConfig = serde_json::from_str(r#"{"offset": "10ms"}"#).unwrap();
        assert_eq!(c.offset, Duration::from_millis(10));
        let c: ClassifyConfig =
            serde_json::from_str(r#"{"retry_on": [500], "safety": {"grpc": true}}"#).unwrap();
        assert_eq!(c.retry_on, [500]);
        assert_eq!(
            c.safety,
            RetrySafety {
                grpc: true,
                ..RetrySafety::default()
            }
        );
        let c: RejectionConfig = serde_json::from_str(r#"{"timeout_status": 503}"#).unwrap();
        assert_eq!(c.timeout_status, StatusCode::SERVICE_UNAVAILABLE);
        let c: PriorityConfig = serde_json::from_str(r#"{"max": "default"}"#).unwrap();
        assert_eq!(c.max, Priority::Default);
        // Round trip.
        let back: RejectionConfig =
            serde_json::from_str(&serde_json::to_string(&RejectionConfig::default()).unwrap())
                .unwrap();
        assert_eq!(back, RejectionConfig::default());
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(serde_json::from_str::<InboundDeadlineConfig>(r#"{"hedaer": "x"}"#).is_err());
        assert!(
            serde_json::from_str::<InboundDeadlineConfig>(r#"{"header": "not a header"}"#).is_err()
        );
        assert!(serde_json::from_str::<RejectionConfig>(r#"{"timeout_status": 42}"#).is_err());
    }
}
