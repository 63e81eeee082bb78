//! `TRUNKD__SECTION__KEY` environment overrides. One test in its own binary:
//! the environment is process-wide, so no other test may load meanwhile.

mod common;

#[test]
fn environment_overrides_daemon_settings() {
    let path = common::write(common::VALID);
    // SAFETY: this binary runs this one test; no other thread reads the
    // environment while it is changed.
    unsafe {
        std::env::set_var("TRUNKD__SIP__MAX_MESSAGE_BYTES", "8192");
        std::env::set_var("TRUNKD__DAEMON__REGION", "eu-1");
        std::env::set_var("TRUNKD__SIP__UDP", "127.0.0.1:5070,127.0.0.1:5071");
        std::env::set_var("TRUNKD__ADMIN__LISTEN", "127.0.0.1:19060");
    }
    let c = trunkd_config::load(&path).unwrap();
    assert_eq!(c.settings.sip.max_message_bytes, 8192);
    assert_eq!(c.settings.daemon.region, "eu-1");
    assert_eq!(
        c.settings.sip.udp,
        vec![
            "127.0.0.1:5070".parse().unwrap(),
            "127.0.0.1:5071".parse().unwrap()
        ]
    );
    assert_eq!(c.settings.admin.listen, "127.0.0.1:19060".parse().unwrap());
    // Resources without their own region take the overridden one.
    assert_eq!(
        c.resources.voice_connector("vc-east").unwrap().aws_region,
        "eu-1"
    );

    // A bad override is reported like a bad file value.
    unsafe { std::env::set_var("TRUNKD__SIP__MAX_MESSAGE_BYTES", "12") };
    let e = trunkd_config::load(&path).unwrap_err().to_string();
    assert!(
        e.ends_with("sip.max_message_bytes: 12 is out of range 1024..=1048576"),
        "{e}"
    );
    unsafe {
        for k in [
            "TRUNKD__SIP__MAX_MESSAGE_BYTES",
            "TRUNKD__DAEMON__REGION",
            "TRUNKD__SIP__UDP",
            "TRUNKD__ADMIN__LISTEN",
        ] {
            std::env::remove_var(k);
        }
    }
}
