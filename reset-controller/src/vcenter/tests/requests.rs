//! Request encoding.

use super::*;

#[test]
fn envelope_is_well_formed_soap() {
    let env = Request::new(
        "RetrieveServiceContent",
        &MoRef::new("ServiceInstance", "ServiceInstance"),
    )
    .into_envelope();
    assert!(env.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope"#));
    assert!(env.contains(r#"<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></RetrieveServiceContent>"#));
    let tree = crate::vcenter::xml::parse(env.as_bytes()).unwrap();
    assert_eq!(
        tree.path(&["Body", "RetrieveServiceContent", "_this"])
            .unwrap()
            .text,
        "ServiceInstance"
    );
}

#[test]
fn guest_operation_requests() {
    let fm = MoRef::new("GuestFileManager", "guestOperationsFileManager");
    let pm = MoRef::new("GuestProcessManager", "guestOperationsProcessManager");
    let am = MoRef::new("GuestAuthManager", "guestOperationsAuthManager");
    let a = auth();
    let cases: Vec<(Request, &str)> = vec![
        (ops::validate_credentials(&am, &vm(), &a), ""),
        (
            ops::create_temp_dir(&fm, &vm(), &a, "reset-peer-"),
            "<prefix>reset-peer-</prefix><suffix></suffix>",
        ),
        (
            ops::make_dir(&fm, &vm(), &a, "/tmp/d"),
            "<directoryPath>/tmp/d</directoryPath><createParentDirectories>false</createParentDirectories>",
        ),
        (
            ops::delete_dir(&fm, &vm(), &a, "/tmp/d"),
            "<directoryPath>/tmp/d</directoryPath><recursive>true</recursive>",
        ),
        (
            ops::delete_file(&fm, &vm(), &a, "/tmp/d/f"),
            "<filePath>/tmp/d/f</filePath>",
        ),
        (
            ops::chmod(&fm, &vm(), &a, "/tmp/d/reset-agent", 0o755),
            r#"<guestFilePath>/tmp/d/reset-agent</guestFilePath><fileAttributes xsi:type="GuestPosixFileAttributes"><permissions>493</permissions></fileAttributes>"#,
        ),
        (
            ops::upload(&fm, &vm(), &a, "/tmp/d/agent.toml", 0o600, 12),
            r#"<guestFilePath>/tmp/d/agent.toml</guestFilePath><fileAttributes xsi:type="GuestPosixFileAttributes"><permissions>384</permissions></fileAttributes><fileSize>12</fileSize><overwrite>true</overwrite>"#,
        ),
        (
            ops::download(&fm, &vm(), &a, "/tmp/d/report.json"),
            "<guestFilePath>/tmp/d/report.json</guestFilePath>",
        ),
        (
            ops::start_program(
                &pm,
                &vm(),
                &a,
                &ProgramSpec {
                    program: "/tmp/d/reset-agent".into(),
                    arguments: "run --config /tmp/d/agent.toml".into(),
                    working_dir: Some("/tmp/d".into()),
                    env: vec!["PATH=/usr/sbin:/usr/bin".into()],
                },
            ),
            r#"<spec xsi:type="GuestProgramSpec"><programPath>/tmp/d/reset-agent</programPath><arguments>run --config /tmp/d/agent.toml</arguments><workingDirectory>/tmp/d</workingDirectory><envVariables>PATH=/usr/sbin:/usr/bin</envVariables></spec>"#,
        ),
        (
            ops::list_processes(&pm, &vm(), &a, &[4242]),
            "<pids>4242</pids>",
        ),
        (ops::terminate(&pm, &vm(), &a, 4242), "<pid>4242</pid>"),
    ];
    for (req, tail) in cases {
        let method = req.method();
        let this = match method {
            "ValidateCredentialsInGuest" => {
                r#"<_this type="GuestAuthManager">guestOperationsAuthManager</_this>"#
            }
            "StartProgramInGuest" | "ListProcessesInGuest" | "TerminateProcessInGuest" => {
                r#"<_this type="GuestProcessManager">guestOperationsProcessManager</_this>"#
            }
            _ => r#"<_this type="GuestFileManager">guestOperationsFileManager</_this>"#,
        };
        let expected = format!(r#"<{method} xmlns="urn:vim25">{this}{AUTH_XML}{tail}</{method}>"#);
        let env = req.into_envelope();
        assert!(
            env.contains(&expected),
            "{method}:\n{env}\nwanted\n{expected}"
        );
        crate::vcenter::xml::parse(env.as_bytes()).unwrap();
    }
}

#[test]
fn shell_quoting() {
    assert_eq!(
        ops::shell_quote("/tmp/reset-peer-ab/agent.toml"),
        "/tmp/reset-peer-ab/agent.toml"
    );
    assert_eq!(ops::shell_quote("a b"), "'a b'");
    assert_eq!(ops::shell_quote("it's;rm"), r"'it'\''s;rm'");
    assert_eq!(ops::shell_quote(""), "''");
}
