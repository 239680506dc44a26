//! What a configuration asks for that this build was compiled without (see the
//! [Cargo features](crate#cargo-features)).
//!
//! A setting that needs a disabled feature is a startup error naming the variable, its value and
//! the feature, never ignored: `OTEL_TRACES_EXPORTER=otlp` without `otlp`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` without `grpc`, and, without `otlp`, an
//! `OTEL_EXPORTER_OTLP_*` endpoint or protocol variable (it asks for OTLP export) unless the
//! signal's exporter is set to `none` or `console`. Without `otlp` and without any of those
//! variables the signal's exporter defaults to `none` (with `otlp` it defaults to `otlp`).

use crate::error::ConfigError;
#[cfg(not(feature = "grpc"))] // the errors for settings made in code
use crate::error::Signal;

/// Whether this build can export over OTLP (feature `otlp`).
pub(crate) const OTLP: bool = cfg!(feature = "otlp");
/// Whether this build can export over OTLP/gRPC (feature `grpc`).
pub(crate) const GRPC: bool = cfg!(feature = "grpc");

/// The variables that decide one signal's exporter and transport, named in errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vars {
    pub(crate) exporter: &'static str,
    pub(crate) endpoint: &'static str,
    pub(crate) protocol: &'static str,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, shared by every signal.
    pub(crate) any_endpoint: &'static str,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, shared by every signal.
    pub(crate) any_protocol: &'static str,
}

/// What one signal's configuration, read from the environment, asks of this build.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asked {
    /// Its exporter is OTLP.
    pub(crate) otlp: bool,
    /// Over gRPC.
    pub(crate) grpc: bool,
}

/// What becomes of a signal's exporter in this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// As configured.
    Kept,
    /// None: this build has no `otlp` and no variable asked for OTLP, so the exporter defaults
    /// to `none`.
    NoExporter,
}

/// Checks one signal's configuration read from the environment (`get` returns a variable's
/// trimmed, non-empty value) against this build's features, and tells whether the default
/// exporter of a build without `otlp` applies.
pub(crate) fn resolve_env(
    vars: &Vars,
    asked: Asked,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    resolve(vars, asked, OTLP, GRPC, get)
}

/// [`resolve_env`] for a given set of features, so each case is tested in every build.
fn resolve(
    vars: &Vars,
    asked: Asked,
    has_otlp: bool,
    has_grpc: bool,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    if !asked.otlp {
        return Ok(Resolved::Kept);
    }
    if !has_otlp {
        // The variable that asked for OTLP: the exporter itself, or else the first OTLP setting.
        let asked = [
            vars.exporter,
            vars.endpoint,
            vars.any_endpoint,
            vars.protocol,
            vars.any_protocol,
        ]
        .into_iter()
        .find_map(|var| get(var).map(|value| (var, value)));
        if let Some((var, value)) = asked {
            return Err(disabled(var, value, "otlp"));
        }
        return Ok(Resolved::NoExporter);
    }
    if asked.grpc && !has_grpc {
        let var = [vars.protocol, vars.any_protocol]
            .into_iter()
            .find(|var| get(var).is_some())
            .unwrap_or(vars.any_protocol);
        return Err(disabled(var, "grpc".to_owned(), "grpc"));
    }
    Ok(Resolved::Kept)
}

/// The error for a value that needs `feature`.
pub(crate) fn disabled(var: &'static str, value: String, feature: &'static str) -> ConfigError {
    ConfigError::FeatureDisabled {
        var,
        value,
        feature,
    }
}

/// The error for configuration set in code that asks for OTLP export without the `otlp` feature.
#[cfg(not(feature = "otlp"))]
pub(crate) fn otlp_disabled(signal: Signal) -> ConfigError {
    let var = match signal {
        Signal::Logs => "ObservabilityConfig::logs.exporter",
        Signal::Metrics => "ObservabilityConfig::metrics.exporter",
        _ => "ObservabilityConfig::traces.exporter",
    };
    disabled(var, "otlp".to_owned(), "otlp")
}

/// The error for configuration set in code that asks for gRPC without the `grpc` feature.
#[cfg(all(feature = "otlp", not(feature = "grpc")))]
pub(crate) fn grpc_disabled(signal: Signal) -> ConfigError {
    let var = match signal {
        Signal::Logs => "ObservabilityConfig::logs.protocol",
        Signal::Metrics => "ObservabilityConfig::metrics.protocol",
        _ => "ObservabilityConfig::traces.protocol",
    };
    disabled(var, "grpc".to_owned(), "grpc")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        ExporterKind, OtlpConfig, Protocol, OTEL_EXPORTER_OTLP_ENDPOINT,
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_LOGS_EXPORTER,
        OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER,
    };
    use crate::ObservabilityConfig;

    fn env<'a>(vars: &'a [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// The traces configuration `vars` ask for, checked as a build with these features would.
    fn check(
        vars: &[(&'static str, &'static str)],
        has_otlp: bool,
        has_grpc: bool,
    ) -> Result<OtlpConfig, ConfigError> {
        let get = env(vars);
        let exporter = match get(OTEL_TRACES_EXPORTER).as_deref() {
            Some("none") => ExporterKind::None,
            Some("console") => ExporterKind::Console,
            _ => ExporterKind::Otlp,
        };
        let grpc = [
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            OTEL_EXPORTER_OTLP_PROTOCOL,
        ]
        .iter()
        .any(|var| get(var).as_deref() == Some("grpc"));
        let mut traces = OtlpConfig {
            exporter,
            protocol: if grpc {
                Protocol::Grpc
            } else {
                Protocol::HttpProtobuf
            },
            endpoint: String::new(),
            headers: std::collections::BTreeMap::new(),
            timeout: std::time::Duration::from_secs(1),
            compression: crate::config::Compression::None,
            certificate: None,
            client_certificate: None,
            client_key: None,
            schedule_delay: std::time::Duration::from_secs(1),
            max_queue_size: 1,
            max_export_batch_size: 1,
        };
        let vars = Vars {
            exporter: OTEL_TRACES_EXPORTER,
            endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            any_endpoint: OTEL_EXPORTER_OTLP_ENDPOINT,
            any_protocol: OTEL_EXPORTER_OTLP_PROTOCOL,
        };
        let asked = Asked {
            otlp: traces.exporter == ExporterKind::Otlp,
            grpc: traces.protocol == Protocol::Grpc,
        };
        if resolve(&vars, asked, has_otlp, has_grpc, get)? == Resolved::NoExporter {
            traces.exporter = ExporterKind::None;
        }
        Ok(traces)
    }

    #[test]
    fn otlp_exporter_without_the_otlp_feature_names_variable_value_and_feature() {
        let err = check(&[("OTEL_TRACES_EXPORTER", "otlp")], false, false).unwrap_err();
        assert_eq!(
            err,
            ConfigError::FeatureDisabled {
                var: "OTEL_TRACES_EXPORTER",
                value: "otlp".to_owned(),
                feature: "otlp",
            }
        );
        assert_eq!(
            err.to_string(),
            r#"OTEL_TRACES_EXPORTER="otlp" needs the soma-observability feature "otlp", which this build does not enable: add it to the dependency (features = ["otlp"]) or change OTEL_TRACES_EXPORTER"#
        );
    }

    #[test]
    fn an_otlp_endpoint_without_the_otlp_feature_is_an_error() {
        let err = check(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")],
            false,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            disabled(
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "http://collector:4318".to_owned(),
                "otlp"
            )
        );
    }

    #[test]
    fn without_otlp_the_default_exporter_is_none_and_none_is_accepted() {
        assert_eq!(
            check(&[], false, false).unwrap().exporter,
            ExporterKind::None
        );
        let vars = [
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ];
        assert_eq!(
            check(&vars, false, false).unwrap().exporter,
            ExporterKind::None
        );
    }

    #[test]
    fn grpc_without_the_grpc_feature_names_the_protocol_variable() {
        let err = check(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], true, false).unwrap_err();
        assert_eq!(
            err,
            disabled(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc".to_owned(), "grpc")
        );
        let err = check(
            &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")],
            true,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            disabled(
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                "grpc".to_owned(),
                "grpc"
            )
        );
    }

    #[test]
    fn enabled_features_accept_their_settings() {
        let vars = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        assert_eq!(check(&vars, true, true).unwrap().protocol, Protocol::Grpc);
        assert_eq!(
            check(&[], true, false).unwrap().exporter,
            ExporterKind::Otlp
        );
    }

    /// This build's own behaviour, through the public parser: whatever the features are, a
    /// setting is either honoured or an error, never dropped.
    #[test]
    fn this_build_rejects_what_it_cannot_do() {
        let parse = |vars: &'static [(&'static str, &'static str)]| {
            ObservabilityConfig::from_lookup(env(vars))
        };
        let grpc = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        let otlp = parse(&[("OTEL_LOGS_EXPORTER", "otlp")]);
        match (OTLP, GRPC) {
            (true, true) => {
                assert_eq!(grpc.unwrap().traces.protocol, Protocol::Grpc);
                assert_eq!(otlp.unwrap().logs.exporter, ExporterKind::Otlp);
            }
            (true, false) => {
                assert_eq!(
                    grpc.unwrap_err(),
                    disabled(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc".to_owned(), "grpc")
                );
                assert_eq!(otlp.unwrap().logs.exporter, ExporterKind::Otlp);
            }
            (false, _) => {
                assert_eq!(
                    grpc.unwrap_err(),
                    disabled(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc".to_owned(), "otlp")
                );
                assert_eq!(
                    otlp.unwrap_err(),
                    disabled(OTEL_LOGS_EXPORTER, "otlp".to_owned(), "otlp")
                );
                let config = parse(&[]).unwrap();
                assert_eq!(config.traces.exporter, ExporterKind::None);
                assert_eq!(config.logs.exporter, ExporterKind::None);
            }
        }
    }

    /// Metrics push needs `otlp` (and `grpc` for gRPC) like the other signals.
    #[test]
    fn this_build_rejects_a_metrics_push_it_cannot_do() {
        let parse = |vars: &'static [(&'static str, &'static str)]| {
            ObservabilityConfig::from_lookup(env(vars))
        };
        let otlp = parse(&[("OTEL_METRICS_EXPORTER", "prometheus,otlp")]);
        let grpc = parse(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ]);
        if OTLP {
            assert_eq!(otlp.unwrap().metrics.exporter, ExporterKind::Otlp);
        } else {
            assert_eq!(
                otlp.unwrap_err(),
                disabled(OTEL_METRICS_EXPORTER, "prometheus,otlp".to_owned(), "otlp")
            );
        }
        match (OTLP, GRPC) {
            (true, true) => assert_eq!(grpc.unwrap().metrics.protocol, Protocol::Grpc),
            (true, false) => assert_eq!(
                grpc.unwrap_err(),
                disabled(
                    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
                    "grpc".to_owned(),
                    "grpc"
                )
            ),
            (false, _) => assert_eq!(
                grpc.unwrap_err(),
                disabled(OTEL_METRICS_EXPORTER, "otlp".to_owned(), "otlp")
            ),
        }
        // Without a push, metrics settings ask for nothing.
        assert_eq!(parse(&[]).unwrap().metrics.exporter, ExporterKind::None);
    }

    /// Configuration set in code cannot get around the check: `build` fails the same way.
    #[tokio::test]
    async fn code_config_needing_a_disabled_feature_fails_at_build() {
        let mut config = ObservabilityConfig::from_lookup(env(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ]))
        .unwrap();
        config.traces.exporter = ExporterKind::Otlp;
        config.traces.protocol = Protocol::Grpc;
        config.traces.endpoint = "http://127.0.0.1:1".to_owned();
        let built = crate::Observability::builder("features")
            .with_config(config)
            .build();
        let expected = if !OTLP {
            Some(disabled(
                "ObservabilityConfig::traces.exporter",
                "otlp".to_owned(),
                "otlp",
            ))
        } else if !GRPC {
            Some(disabled(
                "ObservabilityConfig::traces.protocol",
                "grpc".to_owned(),
                "grpc",
            ))
        } else {
            None
        };
        match (built, expected) {
            (Err(crate::SetupError::Config(err)), Some(expected)) => assert_eq!(err, expected),
            (Ok(_), None) => {}
            (built, expected) => panic!("expected {expected:?}, got {:?}", built.err()),
        }
    }
}
