//! Flags and environment variables; flags win.

use std::time::Duration;

pub(crate) const USAGE: &str = "\
Usage: soma-traffic [OPTIONS]

Sends a realistic mix of requests to the SomaAgent gateway until the duration or the request
count is reached (whichever comes first), or until Ctrl-C; then prints a summary.

Options (environment variable in brackets):
  --url URL            the gateway's base URL [GATEWAY_URL] (default http://127.0.0.1:8080)
  --duration SECONDS   stop after this long, 1 to 86400 [TRAFFIC_DURATION] (default 30)
  --requests N         stop after N requests, 1 to 10000000 [TRAFFIC_REQUESTS] (default 1000)
  --concurrency N      requests in flight at most, 1 to 256 [TRAFFIC_CONCURRENCY] (default 4)
  --rate PER_SECOND    steady request rate; 0 = as fast as possible [TRAFFIC_RATE] (default 20)
  --seed N             seed of the request mix [TRAFFIC_SEED] (default 1)
  --progress SECONDS   print progress to stderr this often; 0 = never [TRAFFIC_PROGRESS] (default 10)
  -h, --help           print this help";

/// What to send, where, and for how long.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    pub(crate) url: url::Url,
    pub(crate) duration: Duration,
    pub(crate) requests: u64,
    pub(crate) concurrency: usize,
    /// Requests per second; 0 means unpaced.
    pub(crate) rate: f64,
    pub(crate) seed: u64,
    /// `Duration::ZERO` means no progress lines.
    pub(crate) progress: Duration,
}

/// The outcome of parsing the command line.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Options),
    Help,
}

/// One setting: its flag, its variable, its default.
struct Setting {
    flag: &'static str,
    var: &'static str,
    default: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--url",
        var: "GATEWAY_URL",
        default: "http://127.0.0.1:8080",
    },
    Setting {
        flag: "--duration",
        var: "TRAFFIC_DURATION",
        default: "30",
    },
    Setting {
        flag: "--requests",
        var: "TRAFFIC_REQUESTS",
        default: "1000",
    },
    Setting {
        flag: "--concurrency",
        var: "TRAFFIC_CONCURRENCY",
        default: "4",
    },
    Setting {
        flag: "--rate",
        var: "TRAFFIC_RATE",
        default: "20",
    },
    Setting {
        flag: "--seed",
        var: "TRAFFIC_SEED",
        default: "1",
    },
    Setting {
        flag: "--progress",
        var: "TRAFFIC_PROGRESS",
        default: "10",
    },
];

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: &str,
    (min, max): (T, T),
) -> Result<T, String> {
    value
        .parse::<T>()
        .ok()
        .filter(|v| *v >= min && *v <= max)
        .ok_or_else(|| {
            format!("{name} {value:?} is not valid: expected a number from {min} to {max}")
        })
}

impl Options {
    /// Parses `args` (without the program name), falling back to `env`, then to the defaults.
    pub(crate) fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Parsed, String> {
        let mut given: Vec<Option<String>> = vec![None; SETTINGS.len()];
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Parsed::Help);
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let index = SETTINGS
                .iter()
                .position(|s| s.flag == flag)
                .ok_or_else(|| format!("unknown argument {arg:?}"))?;
            let value = match inline {
                Some(value) => value,
                None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
            };
            given[index] = Some(value);
        }
        let value = |i: usize| -> (String, String) {
            let setting = &SETTINGS[i];
            match (&given[i], env(setting.var).filter(|v| !v.trim().is_empty())) {
                (Some(v), _) => (setting.flag.to_owned(), v.clone()),
                (None, Some(v)) => (setting.var.to_owned(), v.trim().to_owned()),
                (None, None) => (setting.flag.to_owned(), setting.default.to_owned()),
            }
        };
        let (name, raw_url) = value(0);
        let url = url::Url::parse(&raw_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| format!("{name} {raw_url:?} is not valid: expected an http:// URL"))?;
        let (name, v) = value(1);
        let duration = Duration::from_secs(number(&name, &v, (1, 86_400))?);
        let (name, v) = value(2);
        let requests = number(&name, &v, (1, 10_000_000))?;
        let (name, v) = value(3);
        let concurrency = number(&name, &v, (1, 256))?;
        let (name, v) = value(4);
        let rate = number(&name, &v, (0.0, 10_000.0))?;
        let (name, v) = value(5);
        let seed = number(&name, &v, (0, u64::MAX))?;
        let (name, v) = value(6);
        let progress = Duration::from_secs(number(&name, &v, (0, 86_400))?);
        Ok(Parsed::Run(Self {
            url,
            duration,
            requests,
            concurrency,
            rate,
            seed,
            progress,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match Options::parse(args.iter().map(|a| (*a).to_owned()), |var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })? {
            Parsed::Run(options) => Ok(options),
            Parsed::Help => Err("help".to_owned()),
        }
    }

    #[test]
    fn defaults_target_the_local_gateway_and_are_bounded() {
        let options = parse(&[], &[]).unwrap();
        assert_eq!(options.url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(options.duration, Duration::from_secs(30));
        assert_eq!(options.requests, 1000);
        assert_eq!(options.concurrency, 4);
    }

    #[test]
    fn flags_beat_the_environment() {
        let options = parse(
            &["--duration", "5", "--requests=50"],
            &[("TRAFFIC_DURATION", "9"), ("TRAFFIC_CONCURRENCY", "2")],
        )
        .unwrap();
        assert_eq!(options.duration, Duration::from_secs(5));
        assert_eq!(options.requests, 50);
        assert_eq!(options.concurrency, 2);
    }

    #[test]
    fn unbounded_or_invalid_values_are_rejected() {
        for args in [
            &["--duration", "0"][..],
            &["--requests", "-1"],
            &["--concurrency", "1000"],
            &["--url", "ftp://example"],
            &["--rate"],
            &["--bogus", "1"],
        ] {
            assert!(parse(args, &[]).is_err(), "{args:?}");
        }
        let err = parse(&[], &[("TRAFFIC_DURATION", "forever")]).unwrap_err();
        assert!(err.starts_with("TRAFFIC_DURATION \"forever\""), "{err}");
        assert_eq!(parse(&["-h"], &[]).unwrap_err(), "help");
    }
}
