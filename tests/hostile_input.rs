//! Every parser of outside input, fed generated input: Prometheus answers, flag values (ConfigMap
//! text and LaunchDarkly JSON), window/range parameters, time zones, request bodies, settings
//! files. None may panic; every rejection must say something; every acceptance must be sane.

use proptest::prelude::*;
use rollout_dashboard::api::rollback::{NewDeploy, StartRollback};
use rollout_dashboard::api::rollout::SetPercentage;
use rollout_dashboard::api::window::Window;
use rollout_dashboard::server::charts::TimeZoneOffset;
use rollout_dashboard::server::config::Settings;
use rollout_dashboard::server::flags::launchdarkly_api::Flag;
use rollout_dashboard::server::flags::FlagValue;
use rollout_dashboard::server::prometheus::{parse_alerts, parse_instant, parse_range, parse_value};

/// Text that looks like what each parser expects, mutated: the interesting inputs are near-misses.
fn near_json() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\{\"status\":\"(success|error)\",\"data\":\\{\"resultType\":\"(vector|matrix|scalar|string)\",\"result\":\\[.{0,40}\\]\\}\\}",
        "\\{\"status\":\"success\",\"data\":\\{\"resultType\":\"vector\",\"result\":\\[\\{\"metric\":\\{\\},\"value\":\\[[0-9.e+-]{0,12},\"[0-9a-zA-Z.+-]{0,12}\"\\]\\}\\]\\}\\}",
        "\\{\"_version\":-?[0-9]{0,12},\"variations\":\\[.{0,30}\\],\"environments\":\\{.{0,60}\\}\\}",
        "\\{\"percentage\":.{0,12},\"reason\":.{0,12},\"expected_version\":.{0,12}\\}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn prometheus_answers_never_panic(body in near_json()) {
        for r in [parse_instant(body.as_bytes()).err(), parse_range(body.as_bytes()).err(), parse_alerts(body.as_bytes()).err()].into_iter().flatten() {
            prop_assert!(!r.to_string().trim().is_empty());
        }
        if let Ok(samples) = parse_instant(body.as_bytes()) {
            // Numbers that are not finite are kept as such, never turned into zeros.
            prop_assert!(samples.iter().all(|s| s.timestamp.is_finite()));
        }
    }

    #[test]
    fn prometheus_values_are_numbers_or_refusals(s in "[-+]?([0-9]{0,20}(\\.[0-9]{0,20})?(e[-+]?[0-9]{0,5})?|NaN|Inf|inf|nan|)|.{0,12}") {
        match parse_value(&s) {
            Ok(v) => prop_assert!(v.is_finite() || v.is_nan() || v.is_infinite()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn flag_values_are_0_to_100_or_shown_as_they_are(raw in prop_oneof![any::<String>(), "[ ]{0,2}[-+]?[0-9]{0,5}(\\.[0-9])?%{0,2}[ ]{0,2}", "(on|off|true|false|ON|Off|yes)", "\\{\"enabled\": ?(true|false|1|null), ?\"percentage\": ?-?[0-9]{0,4}(\\.5)?\\}"]) {
        match FlagValue::parse(&raw) {
            Ok(v) => {
                prop_assert!(v.percentage.get() <= 100);
                // What is read can be written back in the same format and reads the same.
                if let Ok(out) = v.render(&raw, v.percentage) {
                    prop_assert_eq!(FlagValue::parse(&out).map(|w| w.percentage), Ok(v.percentage));
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("does not understand")),
        }
    }

    #[test]
    fn launchdarkly_flags_never_panic(body in near_json(), env in "[a-z]{1,12}") {
        if let Ok(flag) = serde_json::from_str::<Flag>(&body) {
            match flag.reading(&env) {
                Ok(r) => {
                    if let Ok(p) = r.parsed { prop_assert!(p.get() <= 100) }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn windows_are_1_minute_to_90_days_or_refused(s in prop_oneof![any::<String>(), "[0-9]{0,10}[smhdwy]?", "-?[0-9]{1,3}[mhd]"]) {
        match s.parse::<Window>() {
            Ok(w) => prop_assert!((1..=90 * 24 * 60).contains(&w.as_minutes())),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn time_zones_are_bounded_offsets(s in prop_oneof![any::<String>(), "(UTC)?[-+][0-9]{1,3}:[0-9]{1,3}", "[A-Za-z/_]{1,20}"]) {
        if let Some(tz) = TimeZoneOffset::parse(&s) {
            prop_assert!(tz.seconds.abs() <= 14 * 3600);
            prop_assert_eq!(TimeZoneOffset::parse(&tz.label()), Some(tz));
        }
    }

    #[test]
    fn request_bodies_are_parsed_strictly(body in near_json()) {
        // Unknown fields, wrong types and missing fields are errors with a message, never a panic.
        for e in [
            serde_json::from_str::<SetPercentage>(&body).err().map(|e| e.to_string()),
            serde_json::from_str::<StartRollback>(&body).err().map(|e| e.to_string()),
            serde_json::from_str::<NewDeploy>(&body).err().map(|e| e.to_string()),
        ].into_iter().flatten() {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn settings_files_are_checked_not_trusted(text in prop_oneof![
        any::<String>(),
        "(environment = \"[a-z]{0,5}\"\n)?(refresh_interval_secs = -?[0-9]{1,6}\n)?\\[(flag|rollback|reports|auth)\\]\n[a-z_]{1,20} = (\"[^\"\n]{0,10}\"|[0-9]{1,4}|true)\n",
    ]) {
        match Settings::from_toml(&text) {
            Ok(s) => {
                prop_assert!((1..=3600).contains(&s.refresh_interval_secs));
                prop_assert!(TimeZoneOffset::parse(&s.reports.time_zone).is_some());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
