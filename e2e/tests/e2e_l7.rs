//! L7 calls end to end: the agent's payload capture and parsers against real servers and
//! clients on loopback, each test knowing exactly what it sent.

use kindling_testkit as support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support::host::{AgentProcess, Killed, fixture, require_root, start_server, tempdir, tool};

/// Polls `sql` (which returns a column `n`) until it reaches `want`.
fn wait_count(agent: &AgentProcess, sql: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = agent.query_json(sql)[0]["n"].as_u64().unwrap();
        if n >= want {
            // A late duplicate would show within a flush or two.
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        assert!(Instant::now() < deadline, "{n} of {want} after 15 s: {sql}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// curl's view of each request: (status, header bytes, body bytes, request bytes, seconds
/// from pre-transfer to the end).
fn curl(args: &[&str]) -> Vec<(u16, u64, u64, u64, f64)> {
    let out = Command::new("curl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let secs = |i: usize| f[i].parse::<f64>().unwrap();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                secs(5) - secs(4),
            )
        })
        .collect()
}

/// curl's view (as [`curl`]) of `urls` fetched in order on one keep-alive HTTP/1.1 connection
/// (certificates not checked) with the extra `headers`.
fn curl_each(urls: &[String], headers: &[&str]) -> Vec<(u16, u64, u64, u64, f64)> {
    const WRITE_OUT: &str = "%{http_code} %{size_header} %{size_download} %{size_request} \
                             %{time_pretransfer} %{time_total}\n";
    let mut args = vec!["-sk", "--http1.1", "-w", WRITE_OUT];
    for header in headers {
        args.extend(["-H", header]);
    }
    for url in urls {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    curl(&args)
}

#[test]
fn http_keep_alive_statuses_sizes_timing_and_redaction() {
    require_root();
    tool("curl");
    let agent = AgentProcess::start("l7-node", &[]);
    let (_server, port) = start_server(Command::new("python3").arg(fixture("http_server.py")));
    let base = format!("http://127.0.0.1:{port}");
    let paths = ["/ok?secret=query", "/big", "/missing", "/fail", "/ok"];
    // One curl, one keep-alive connection, five requests; secrets in headers.
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let seen = curl_each(
        &urls,
        &[
            "Authorization: Bearer kl-secret-token",
            "Cookie: session=kl-secret-cookie",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ],
    );
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 200, 404, 500, 200]
    );

    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 10);
    let rows = agent.query_json(&format!(
        "SELECT role, comm, method, resource, status, is_error, request_bytes, response_bytes, \
                duration_ns, request_sent_ns, waiting_ttfb_ns, content_download_ns, trace_id, \
                protocol, conn_id \
         FROM calls WHERE dst_port = {port} ORDER BY role, ts"
    ));
    assert_eq!(rows.len(), 10, "{rows:#?}");
    let (clients, servers) = rows.split_at(5);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (side, comm) in [(clients, "curl"), (servers, "kl-http")] {
        let got: Vec<(&str, &str, &str, &str, bool)> = side
            .iter()
            .map(|r| {
                (
                    r["comm"].as_str().unwrap(),
                    r["method"].as_str().unwrap(),
                    r["resource"].as_str().unwrap(),
                    r["status"].as_str().unwrap(),
                    r["is_error"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (comm, "GET", "/ok", "200", false),
                (comm, "GET", "/big", "200", false),
                (comm, "GET", "/missing", "404", true),
                (comm, "GET", "/fail", "500", true),
                (comm, "GET", "/ok", "200", false),
            ]
        );
        for (r, s) in side.iter().zip(&seen) {
            assert_eq!(r["protocol"], "http");
            assert_eq!(r["trace_id"], trace);
            // Sizes: what curl sent and received, headers included.
            assert_eq!(r["request_bytes"].as_u64(), Some(s.3), "{r}");
            assert_eq!(r["response_bytes"].as_u64(), Some(s.1 + s.2), "{r}");
            let parts = ["request_sent_ns", "waiting_ttfb_ns", "content_download_ns"]
                .map(|c| r[c].as_u64().unwrap());
            assert_eq!(
                parts.iter().sum::<u64>(),
                r["duration_ns"].as_u64().unwrap()
            );
        }
        // One connection for all five: the same conn_id, known to the flow tracker.
        let conn = side[0]["conn_id"].as_u64().unwrap();
        assert!(conn > 0 && side.iter().all(|r| r["conn_id"].as_u64() == Some(conn)));
    }
    // The client's durations agree with curl's own timing (pre-transfer to end) within 5 ms +
    // 25%: both clocks run on this host, but curl measures in user space around its syscalls.
    for (r, s) in clients.iter().zip(&seen) {
        let ours = r["duration_ns"].as_u64().unwrap() as f64 / 1e9;
        let tolerance = 0.005 + 0.25 * s.4;
        assert!(
            (ours - s.4).abs() <= tolerance,
            "ours {ours} s vs curl {} s: {r}",
            s.4
        );
    }
    // The 1 MiB body takes many reads: its download phase is the bulk of the call.
    let big = &clients[1];
    assert!(big["content_download_ns"].as_u64() > Some(0));

    // Cleartext: read from the socket's own bytes.
    let how = agent.query_json(&format!(
        "SELECT DISTINCT tls FROM calls WHERE dst_port = {port}"
    ));
    assert_eq!(how, [serde_json::json!({"tls": "none"})]);
    // Redaction: no secret from headers or query strings in any column of any table.
    assert_no_secret(
        &agent,
        &["kl-secret-token", "kl-secret-cookie", "secret=query"],
    );
}

/// A self-signed certificate and key for 127.0.0.1, made with `openssl` in `dir`: (cert, key).
fn self_signed(dir: &std::path::Path) -> (String, String) {
    self_signed_for(dir, "127.0.0.1")
}

/// A self-signed certificate and key for the server name `name` (its CN and only SAN).
fn self_signed_for(dir: &std::path::Path, name: &str) -> (String, String) {
    tool("openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let san = if name.parse::<std::net::IpAddr>().is_ok() {
        format!("subjectAltName=IP:{name}")
    } else {
        format!("subjectAltName=DNS:{name}")
    };
    let subject = format!("/CN={name}");
    run_ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &subject,
        "-addext",
        &san,
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    (cert.display().to_string(), key.display().to_string())
}

/// The TLS columns of the closed `flows` rows of the connections to `port`, by role:
/// "role tls tls_sni tls_version", and whether tls_handshake_ns lies within the row's duration.
fn tls_flows(agent: &AgentProcess, port: u16) -> Vec<(String, bool)> {
    agent
        .query_json(&format!(
            "SELECT role, tls, tls_sni, tls_version, tls_handshake_ns, duration_ns FROM flows \
             WHERE dst_port = {port} AND status = 'closed' ORDER BY role"
        ))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("<null>");
            let within = r["tls_handshake_ns"]
                .as_u64()
                .is_some_and(|h| h > 0 && h < r["duration_ns"].as_u64().unwrap());
            let columns = ["role", "tls", "tls_sni", "tls_version"].map(s).join(" ");
            (columns, within)
        })
        .collect()
}

/// TLS the agent cannot decrypt (grpcio links BoringSSL statically: no uprobe) and TLS it
/// can (curl through OpenSSL) both name and time their connections in `flows`, from their
/// cleartext start: the exact server name each client sent (`grpc.ssl_target_name_override`,
/// `curl --resolve`), the version the server chose, and a handshake duration within
/// the connection's lifetime, on both ends; `flows.tls` says which were decrypted. The
/// undecrypted gRPC connection has no `calls`.
#[test]
fn tls_flows_carry_the_server_name_version_and_handshake_time() {
    require_root();
    require_grpcio();
    tool("curl");
    let agent = AgentProcess::start("l7-sni", &[]);
    let dir = tempdir("kl-sni");
    let (cert, key) = self_signed_for(&dir, "kl-sni.test");
    // Both settle on TLS 1.3 (grpcio's BoringSSL with a post-quantum key share that makes its
    // ServerHello longer than the capture, before its supported_versions: the key share alone
    // says 1.3). Only OpenSSL's plaintext is read: grpcio's connections are `sni-only`.
    let want = |tls: &str, version: &str| {
        ["client", "server"].map(|role| (format!("{role} {tls} kl-sni.test {version}"), true))
    };
    let closed = |port: u16| {
        format!("SELECT count(*) AS n FROM flows WHERE dst_port = {port} AND status = 'closed'")
    };

    let (grpc_server, port) = start_server(Command::new("python3").args([
        &fixture("grpc_server.py"),
        "--tls",
        &cert,
        &key,
    ]));
    let out = run_ok(
        Command::new("python3")
            .args([&fixture("grpc_client.py"), &port.to_string(), "say:hello"])
            .env("KL_GRPC_TLS_CERT", &cert)
            .env("KL_GRPC_TLS_NAME", "kl-sni.test"),
    );
    assert_eq!(out, "say OK 5\n");
    // The client's end closes with the client, the server's when the server stops.
    drop(grpc_server);
    wait_count(&agent, &closed(port), 2);
    assert_eq!(tls_flows(&agent, port), want("sni-only", "TLS 1.3"));
    let calls = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    assert_eq!(agent.query_json(&calls)[0]["n"].as_u64(), Some(0));

    let (https, port) = start_server(Command::new("python3").args([
        &fixture("http_server.py"),
        "--tls",
        &cert,
        &key,
    ]));
    let url = format!("https://kl-sni.test:{port}/ok");
    let resolve = format!("kl-sni.test:{port}:127.0.0.1");
    let seen = curl(&[
        "-s",
        "--cacert",
        &cert,
        "--resolve",
        &resolve,
        "-w",
        "%{http_code} 0 0 0 0 0\n",
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(seen[0].0, 200);
    drop(https);
    wait_count(&agent, &closed(port), 2);
    assert_eq!(tls_flows(&agent, port), want("openssl", "TLS 1.3"));
}

/// HTTPS through the system's OpenSSL on both ends: the HTTP test server wrapped in Python's
/// `ssl` (`SSL_read_ex`/`SSL_write_ex`) and curl (libcurl over OpenSSL: `SSL_read`/
/// `SSL_write`), four requests on one keep-alive connection. The agent reads the plaintext at
/// the library's calls: each request is an `http` call on each end with its method, path,
/// status and the plaintext sizes curl reports, on the connection the flow tracker knows; the
/// handshake's ciphertext is neither a call nor an undetected session, and no secret sent
/// inside the TLS stream is stored. The server starts before the agent: a probe is set on the
/// library file, so processes already running are covered.
#[test]
fn https_through_openssl_is_http_calls_on_both_ends() {
    require_root();
    tool("curl");
    let dir = tempdir("kl-tls");
    let (cert, key) = self_signed(&dir);
    let (_server, port) = start_server(Command::new("python3").args([
        &fixture("http_server.py"),
        "--tls",
        &cert,
        &key,
    ]));
    let agent = AgentProcess::start("l7-tls", &[]);
    let base = format!("https://127.0.0.1:{port}");
    let paths = ["/ok?secret=query", "/missing", "/big", "/ok"];
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let seen = curl_each(&urls, &["Authorization: Bearer kl-secret-tls-token"]);
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 404, 200, 200]
    );
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 8);
    let rows = agent.query_json(&format!(
        "SELECT role, comm, protocol, method, resource, status, request_bytes, response_bytes, \
                conn_id FROM calls WHERE dst_port = {port} ORDER BY role, ts"
    ));
    let (clients, servers) = rows.split_at(4);
    for (side, comm) in [(clients, "curl"), (servers, "kl-http")] {
        let got: Vec<(&str, &str, &str, &str, &str)> = side
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap();
                (
                    s("comm"),
                    s("protocol"),
                    s("method"),
                    s("resource"),
                    s("status"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (comm, "http", "GET", "/ok", "200"),
                (comm, "http", "GET", "/missing", "404"),
                (comm, "http", "GET", "/big", "200"),
                (comm, "http", "GET", "/ok", "200"),
            ]
        );
        for (r, s) in side.iter().zip(&seen) {
            assert_eq!(r["request_bytes"].as_u64(), Some(s.3), "{r}");
            assert_eq!(r["response_bytes"].as_u64(), Some(s.1 + s.2), "{r}");
        }
        let conn = side[0]["conn_id"].as_u64().unwrap();
        assert!(conn > 0 && side.iter().all(|r| r["conn_id"].as_u64() == Some(conn)));
    }
    assert_timing_sums(&agent, port);
    let how = agent.query_json(&format!(
        "SELECT DISTINCT tls FROM calls WHERE dst_port = {port}"
    ));
    assert_eq!(how, [serde_json::json!({"tls": "openssl"})]);
    let undetected = agent.query_json("SELECT sum(sessions_undetected) AS n FROM protocol_stats");
    assert_eq!(undetected[0]["n"].as_u64(), Some(0), "{undetected:?}");
    assert_no_secret(&agent, &["kl-secret-tls-token", "secret=query"]);
}

/// Python on both ends of HTTPS (the test server in `ssl`, a `urllib` client): both through
/// OpenSSL's `SSL_read_ex`/`SSL_write_ex`, both decrypted. urllib opens a connection per
/// request, closed at once: each request is one `http` call on each end, with its status, and
/// both ends count the same response bytes.
#[test]
fn https_from_python_urllib_is_http_calls_on_both_ends() {
    require_root();
    let agent = AgentProcess::start("l7-tls-urllib", &[]);
    let dir = tempdir("kl-tls-urllib");
    let (cert, key) = self_signed(&dir);
    let (_server, port) = start_server(Command::new("python3").args([
        &fixture("http_server.py"),
        "--tls",
        &cert,
        &key,
    ]));
    let client = format!(
        r#"
import ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context(cafile=sys.argv[1])
for path in ("/ok", "/missing", "/fail"):
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{{path}}", context=context) as r:
            print(r.status, len(r.read()))
    except urllib.error.HTTPError as e:
        print(e.code, len(e.read()))
"#
    );
    let out = run_ok(Command::new("python3").args(["-c", &client, &cert]));
    assert_eq!(out, "200 100\n404 9\n500 5\n");
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 6);
    let got = row_lines(
        &agent,
        &format!(
            "SELECT role, comm, resource, status, tls, count(DISTINCT conn_id) AS conns \
             FROM calls WHERE dst_port = {port} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 3"
        ),
        &["role", "comm", "resource", "status", "tls", "conns"],
    );
    assert_eq!(
        got,
        [
            "client python3 /fail 500 openssl 1",
            "client python3 /missing 404 openssl 1",
            "client python3 /ok 200 openssl 1",
            "server kl-http /fail 500 openssl 1",
            "server kl-http /missing 404 openssl 1",
            "server kl-http /ok 200 openssl 1",
        ]
    );
    // Both ends count the same response bytes.
    let sizes = agent.query_json(&format!(
        "SELECT resource, count(DISTINCT response_bytes) AS n FROM calls \
         WHERE dst_port = {port} GROUP BY resource"
    ));
    assert!(sizes.iter().all(|r| r["n"] == 1), "{sizes:?}");
    assert_timing_sums(&agent, port);
}

/// The rows `sql` returns, each as its `columns` joined by spaces (text as it is, other values
/// as JSON).
fn row_lines(agent: &AgentProcess, sql: &str, columns: &[&str]) -> Vec<String> {
    agent
        .query_json(sql)
        .iter()
        .map(|r| {
            let value = |c: &&str| match &r[*c] {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            columns.iter().map(value).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The count `column` of `agent_stats` (the same on every row).
fn agent_stat(agent: &AgentProcess, column: &str) -> u64 {
    let sql = format!("SELECT {column} AS n FROM agent_stats LIMIT 1");
    agent.query_json(&sql)[0]["n"].as_u64().unwrap()
}

/// A libssl that appears after the agent started (a copy of the host's, as a container image
/// would bring its own: another file) is probed at the agent's next look at new processes,
/// within its 5 s period: a TLS server loading it (`LD_LIBRARY_PATH`) has its calls read.
#[test]
fn a_libssl_first_mapped_after_start_is_probed_within_the_rescan_period() {
    require_root();
    tool("curl");
    let agent = AgentProcess::start("l7-tls-later", &[]);
    let before = agent_stat(&agent, "tls_libraries_probed");
    assert!(before >= 1, "the host's libssl is probed at start");
    let dir = tempdir("kl-tls-later");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let (cert, key) = self_signed(&dir);
    let host = [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join("libssl.so.3"))
    .find(|p| p.exists())
    .expect("the host's libssl.so.3");
    let copy = dir.join("lib/libssl.so.3");
    std::fs::copy(&host, &copy).unwrap();
    let (server, port) = start_server(
        Command::new("python3")
            .args([&fixture("http_server.py"), "--tls", &cert, &key])
            .env("LD_LIBRARY_PATH", dir.join("lib")),
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.0.id())).unwrap();
    assert!(
        maps.contains(copy.to_str().unwrap()),
        "the server maps the copy"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent_stat(&agent, "tls_libraries_probed") < before + 1 {
        assert!(Instant::now() < deadline, "the copy not probed within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://127.0.0.1:{port}/ok");
    let missing = format!("https://127.0.0.1:{port}/missing");
    let seen = curl(&[
        "-sk",
        "-w",
        "%{http_code} 0 0 0 0 0\n",
        "-o",
        "/dev/null",
        &url,
        "-o",
        "/dev/null",
        &missing,
    ]);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [200, 404]);
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 4);
    let server_rows = agent.query_json(&format!(
        "SELECT resource, status FROM calls WHERE dst_port = {port} AND role = 'server' \
         ORDER BY ts"
    ));
    let got: Vec<(&str, &str)> = server_rows
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("/ok", "200"), ("/missing", "404")]);
}

/// The Go HTTPS fixture (`go_https.go`), built with the host's Go into `dir`.
fn build_go_https(dir: &std::path::Path) -> String {
    tool("go");
    let out = dir.join("go_https");
    run_ok(
        Command::new("go")
            .args([
                "build",
                "-o",
                out.to_str().unwrap(),
                &fixture("go_https.go"),
            ])
            // No module proxy or toolchain download: the fixture is stdlib-only.
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-buildvcs=false")
            .env("GOPROXY", "off"),
    );
    out.display().to_string()
}

/// nginx with `ssl` (the system's OpenSSL, probed at its internal read and write; one process,
/// no master, so the test's kill ends it) and curl:
/// five keep-alive requests for a static file and two 404s on one connection. Each is one
/// `http` call on each end with the exact method, path, status and the byte counts curl
/// reports, `tls = 'openssl'`; the secrets sent inside TLS appear in no table.
#[test]
fn https_from_nginx_is_http_calls_on_both_ends_with_exact_sizes() {
    require_root();
    tool("nginx");
    tool("curl");
    let dir = tempdir("kl-nginx-tls");
    let (cert, key) = self_signed(&dir);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/file.txt"), "k".repeat(100)).unwrap();
    let port = support::host::free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 location = /file.txt {{ root {d}/www; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let agent = AgentProcess::start("l7-nginx-tls", &[]);
    let _nginx = Killed(
        Command::new("nginx")
            .args(["-e", &format!("{d}/error.log"), "-p", &d.to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .spawn()
            .expect("start nginx"),
    );
    wait_listening(port, "nginx");
    let base = format!("https://127.0.0.1:{port}");
    let paths = [
        "/file.txt?secret=nginx-query",
        "/file.txt",
        "/nope",
        "/file.txt",
        "/file.txt",
        "/gone",
        "/file.txt",
    ];
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let seen = curl_each(&urls, &["Authorization: Bearer kl-secret-nginx-token"]);
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, [200, 200, 404, 200, 200, 404, 200]);
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 14);
    for (role, comm) in [("client", "curl"), ("server", "nginx")] {
        let got = row_lines(
            &agent,
            &format!(
                "SELECT comm, method, resource, status, tls, request_bytes, response_bytes \
                 FROM calls WHERE dst_port = {port} AND role = '{role}' ORDER BY ts"
            ),
            &[
                "comm",
                "method",
                "resource",
                "status",
                "tls",
                "request_bytes",
                "response_bytes",
            ],
        );
        let want: Vec<String> = paths
            .iter()
            .zip(&seen)
            .map(|(p, s)| {
                let path = p.split('?').next().unwrap();
                format!("{comm} GET {path} {} openssl {} {}", s.0, s.3, s.1 + s.2)
            })
            .collect();
        assert_eq!(got, want, "{role}");
    }
    assert_timing_sums(&agent, port);
    assert_no_secret(&agent, &["kl-secret-nginx-token", "secret=nginx-query"]);
}

/// HTTPS in Go's own `crypto/tls`, read at `(*Conn).Write` and `Read` (entry probes and probes
/// on their `ret` instructions): a Go server, started before the agent, answers curl (OpenSSL)
/// over HTTP/1.1 with keep-alive, then a Go client over HTTP/1.1 and over HTTP/2. Every request
/// is one call on each end with its method, path and status; the Go server's rows count the
/// exact bytes curl reports and say `tls = 'go'` while curl's say `openssl`; the two Go ends
/// agree on every size; each connection's `flows` rows say which library was read; nothing sent
/// inside TLS is stored. A Go program started after the agent is probed within the rescan
/// period; SIGTERM unloads the Go programs.
#[test]
fn https_from_go_crypto_tls_is_http_calls_on_both_ends() {
    require_root();
    tool("curl");
    let dir = tempdir("kl-go-tls");
    let go_https = build_go_https(&dir);
    let (cert, key) = self_signed(&dir);
    let (_server, port) = start_server(Command::new(&go_https).args(["server", &cert, &key]));
    let agent = AgentProcess::start("l7-go-tls", &[]);
    // Any other Go program running on the machine counts too.
    assert!(
        agent_stat(&agent, "tls_go_binaries_probed") >= 1,
        "the running Go server is probed at start"
    );
    let base = format!("https://127.0.0.1:{port}");
    let count = |n: u64| {
        wait_count(
            &agent,
            &format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}"),
            n,
        )
    };
    let rows = |role: &str, comm: &str| {
        let sql = format!(
            "SELECT protocol, method, resource, status, tls, request_bytes, response_bytes \
             FROM calls WHERE dst_port = {port} AND role = '{role}' AND comm = '{comm}' \
             ORDER BY ts"
        );
        let columns = [
            "protocol",
            "method",
            "resource",
            "status",
            "tls",
            "request_bytes",
            "response_bytes",
        ];
        row_lines(&agent, &sql, &columns)
    };

    // curl to the Go server: exact sizes from curl.
    let paths = ["/ok?secret=go-query", "/missing", "/ok"];
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let seen = curl_each(&urls, &["Authorization: Bearer kl-secret-go-token"]);
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 404, 200]
    );
    count(6);
    let want = |tls: &str| -> Vec<String> {
        ["/ok", "/missing", "/ok"]
            .iter()
            .zip(&seen)
            .map(|(path, s)| format!("http GET {path} {} {tls} {} {}", s.0, s.3, s.1 + s.2))
            .collect()
    };
    assert_eq!(rows("server", "go_https"), want("go"));
    assert_eq!(rows("client", "curl"), want("openssl"));

    // The Go client, HTTP/1.1 then HTTP/2: both ends Go.
    let h1 = run_ok(Command::new(&go_https).args([
        "client",
        &cert,
        &format!("{base}/ok"),
        &format!("{base}/missing"),
    ]));
    // The version the Go client negotiated, which the flows must name.
    let version = h1
        .lines()
        .next()
        .unwrap()
        .splitn(4, ' ')
        .nth(3)
        .unwrap()
        .to_owned();
    assert_eq!(
        h1,
        format!("200 100 HTTP/1.1 {version}\n404 9 HTTP/1.1 {version}\n")
    );
    count(10);
    let h2 = run_ok(Command::new(&go_https).args([
        "client",
        "--h2",
        &cert,
        &format!("{base}/ok"),
        &format!("{base}/missing"),
    ]));
    assert_eq!(
        h2,
        format!("200 100 HTTP/2.0 {version}\n404 9 HTTP/2.0 {version}\n")
    );
    count(14);
    let client = rows("client", "go_https");
    let server = rows("server", "go_https");
    assert_eq!(
        client,
        server[3..],
        "both Go ends, the same calls and sizes"
    );
    let shape: Vec<String> = client
        .iter()
        .map(|r| r.split(' ').take(5).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        shape,
        [
            "http GET /ok 200 go",
            "http GET /missing 404 go",
            "http2 GET /ok 200 go",
            "http2 GET /missing 404 go",
        ]
    );
    assert_eq!(agent_stat(&agent, "kernel_tls_untracked"), 0);
    let undetected = agent.query_json("SELECT sum(sessions_undetected) AS n FROM protocol_stats");
    assert_eq!(undetected[0]["n"].as_u64(), Some(0), "{undetected:?}");
    assert_timing_sums(&agent, port);
    // Three connections, both ends of each: their flows say how their bytes were read.
    let closed =
        format!("SELECT count(*) AS n FROM flows WHERE dst_port = {port} AND status = 'closed'");
    wait_count(&agent, &closed, 6);
    let how = agent.query_json(&format!(
        "SELECT comm, tls, tls_version, count(*) AS n FROM flows WHERE dst_port = {port} \
         AND status = 'closed' GROUP BY 1, 2, 3 ORDER BY 1"
    ));
    assert_eq!(
        how,
        [
            serde_json::json!({"comm": "curl", "tls": "openssl", "tls_version": "TLS 1.3", "n": 1}),
            serde_json::json!({"comm": "go_https", "tls": "go", "tls_version": version, "n": 5}),
        ]
    );
    assert_no_secret(&agent, &["kl-secret-go-token", "secret=go-query"]);

    // A Go program that first runs after the agent started (a copy: another file) is probed
    // at the agent's next look at new processes, within its 5 s period.
    let probed = agent_stat(&agent, "tls_go_binaries_probed");
    let copy = dir.join("go_https_later");
    std::fs::copy(&go_https, &copy).unwrap();
    let (_later, later_port) = start_server(Command::new(&copy).args(["server", &cert, &key]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent_stat(&agent, "tls_go_binaries_probed") < probed + 1 {
        assert!(Instant::now() < deadline, "the copy not probed within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = curl_each(&[format!("https://127.0.0.1:{later_port}/ok")], &[]);
    assert_eq!(seen[0].0, 200);
    let later = format!(
        "SELECT count(*) AS n FROM calls WHERE dst_port = {later_port} AND role = 'server' \
         AND tls = 'go' AND resource = '/ok' AND status = '200'"
    );
    wait_count(&agent, &later, 1);

    // SIGTERM: the Go programs are unloaded with every other (their probes with them).
    tool("bpftool");
    let go_programs = || {
        let out = run_ok(Command::new("bpftool").args(["prog", "show"]));
        out.matches("name go_tls_").count()
    };
    assert_eq!(go_programs(), 3, "go_tls_write, go_tls_read, go_tls_return");
    assert!(agent.terminate().success());
    assert_eq!(go_programs(), 0);
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of `calls` for the server on `port` with this `role`, as (method, resource, status,
/// is_error) in request order.
fn call_rows(
    agent: &AgentProcess,
    port: u16,
    role: &str,
    extra: &str,
) -> Vec<(String, String, String, bool)> {
    agent
        .query_json(&format!(
            "SELECT method, resource, status, is_error FROM calls \
             WHERE dst_port = {port} AND role = '{role}' {extra} ORDER BY ts"
        ))
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["resource"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
                r["is_error"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn owned(rows: &[(&str, &str, &str, bool)]) -> Vec<(String, String, String, bool)> {
    rows.iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
        .collect()
}

/// No row of any table the agent serves, in any column, holds any of `secrets`.
fn assert_no_secret(agent: &AgentProcess, secrets: &[&str]) {
    for table in kindling_wire::schema::TABLES {
        let sql = format!("SELECT * FROM {table}");
        let out = agent.cli(&["query", "--agent", &agent.addr, "--format", "csv", &sql]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} found in {table}");
        }
    }
}

/// Every call of the server on `port` has its three timing parts adding up to its duration.
fn assert_timing_sums(agent: &AgentProcess, port: u16) {
    let bad = agent.query_json(&format!(
        "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND \
         request_sent_ns + waiting_ttfb_ns + content_download_ns <> duration_ns"
    ));
    assert_eq!(bad[0]["n"].as_u64(), Some(0));
}

/// A private redis-server on 127.0.0.1:`port`, without persistence.
fn start_redis(port: u16) -> Killed {
    tool("redis-server");
    let server = Killed(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    wait_listening(port, "redis-server");
    server
}

#[test]
fn redis_commands_errors_and_a_pipeline() {
    require_root();
    tool("redis-server");
    tool("redis-cli");
    let agent = AgentProcess::start("l7-redis", &[]);
    let port = support::host::free_port();
    let _server = start_redis(port);
    let p = port.to_string();
    let cli = |args: &[&str]| run_ok(Command::new("redis-cli").args(["-p", &p]).args(args));
    // Five commands on five connections; INCR of a non-number and LPUSH on a string fail.
    cli(&["SET", "kl-key", "kl-secret-value"]);
    assert_eq!(cli(&["GET", "kl-key"]).trim(), "kl-secret-value");
    cli(&["INCR", "kl-key"]);
    cli(&["LPUSH", "kl-key", "x"]);
    cli(&["DEL", "kl-key"]);
    // 20 SETs written at once (pipelined, within the 1 KiB capture); redis-cli --pipe ends the
    // stream with an ECHO of its own.
    let mut input = String::new();
    for i in 0..20 {
        let (k, v) = (format!("p{i}"), format!("v{i}"));
        input.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
            k.len(),
            v.len()
        ));
    }
    let pipe_path = std::env::temp_dir().join(format!("kl-redis-pipe-{port}"));
    std::fs::write(&pipe_path, input).unwrap();
    let out = run_ok(Command::new("sh").arg("-c").arg(format!(
        "redis-cli -p {port} --pipe < {}",
        pipe_path.display()
    )));
    assert!(out.contains("replies: 20"), "{out}");
    let _ = std::fs::remove_file(&pipe_path);

    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}"),
        2 * 26,
    );
    for role in ["client", "server"] {
        let rows = call_rows(&agent, port, role, "AND method NOT IN ('SET', 'ECHO')");
        assert_eq!(
            rows,
            owned(&[
                ("GET", "GET", "", false),
                ("INCR", "INCR", "ERR", true),
                ("LPUSH", "LPUSH", "WRONGTYPE", true),
                ("DEL", "DEL", "", false),
            ]),
            "{role}"
        );
        let by_method = agent.query_json(&format!(
            "SELECT method, count(*) AS n, sum(CAST(is_error AS INT)) AS errors FROM calls \
             WHERE dst_port = {port} AND role = '{role}' GROUP BY method ORDER BY method"
        ));
        let got: Vec<(String, u64)> = by_method
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap().to_owned(),
                    r["n"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("DEL", 1),
                ("ECHO", 1),
                ("GET", 1),
                ("INCR", 1),
                ("LPUSH", 1),
                ("SET", 21)
            ]
            .map(|(m, n)| (m.to_owned(), n)),
            "{role}"
        );
    }
    let err = agent.query_json(&format!(
        "SELECT error_message FROM calls WHERE dst_port = {port} AND method = 'LPUSH' AND role = 'client'"
    ));
    assert!(
        err[0]["error_message"]
            .as_str()
            .unwrap()
            .starts_with("WRONGTYPE Operation against a key")
    );
    assert_timing_sums(&agent, port);
    // Values never reach any column.
    assert_no_secret(&agent, &["kl-secret-value"]);
}

/// A private MariaDB server in a temporary data directory.
fn start_mariadb(dir: &std::path::Path, port: u16) -> Killed {
    tool("mariadb-install-db");
    tool("mariadbd");
    run_ok(Command::new("mariadb-install-db").args([
        "--user=root",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        &format!("--datadir={}", dir.join("data").display()),
    ]));
    let server = Killed(
        Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                &format!("--datadir={}", dir.join("data").display()),
                &format!("--socket={}", dir.join("sock").display()),
                &format!("--port={port}"),
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd"),
    );
    wait_listening(port, "mariadbd");
    server
}

#[test]
fn mysql_queries_and_a_failing_statement() {
    require_root();
    tool("mariadb");
    let dir = tempdir("kl-mysql");
    let port = support::host::free_port();
    let _server = start_mariadb(&dir, port);
    let agent = AgentProcess::start("l7-mysql", &[]);
    let sql = |q: &str| {
        Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-u",
                "root",
                "-N",
                "-e",
                q,
            ])
            .output()
            .unwrap()
    };
    // One connection each; the third fails with 1146 (no such table).
    assert!(
        sql("CREATE DATABASE kl; CREATE TABLE kl.t (id INT, name VARCHAR(20))")
            .status
            .success()
    );
    assert!(
        sql("INSERT INTO kl.t VALUES (1, 'kl-secret-literal'), (2, 'b')")
            .status
            .success()
    );
    let failed = sql("SELECT * FROM kl.missing WHERE id = 7");
    assert!(!failed.status.success());
    let out = sql("SELECT name FROM kl.t WHERE id = 2");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "b");
    // A syntax error whose message quotes the statement's rest, a literal included.
    assert!(
        !sql("SELECT 1 FORM DUAL WHERE 'kl-secret-syntax' = 1")
            .status
            .success()
    );

    let count = format!(
        "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND resource LIKE '%kl.%'"
    );
    wait_count(&agent, &count, 2 * 4);
    for role in ["client", "server"] {
        let rows = call_rows(&agent, port, role, "AND resource LIKE '%kl.%'");
        assert_eq!(
            rows,
            owned(&[
                (
                    "CREATE",
                    "CREATE TABLE kl.t (id INT, name VARCHAR(?))",
                    "",
                    false
                ),
                (
                    "INSERT",
                    "INSERT INTO kl.t VALUES (?, ?), (?, ?)",
                    "",
                    false
                ),
                (
                    "SELECT",
                    "SELECT * FROM kl.missing WHERE id = ?",
                    "1146",
                    true
                ),
                ("SELECT", "SELECT name FROM kl.t WHERE id = ?", "", false),
            ]),
            "{role}"
        );
    }
    // Sizes: a COM_QUERY packet is a 4-byte header, the command byte and the SQL, on both
    // ends (the server reads the header apart from the rest).
    let sizes = agent.query_json(&format!(
        "SELECT role, request_bytes FROM calls WHERE dst_port = {port} AND resource LIKE '%kl.%' ORDER BY role, ts"
    ));
    let texts = [
        "CREATE TABLE kl.t (id INT, name VARCHAR(20))",
        "INSERT INTO kl.t VALUES (1, 'kl-secret-literal'), (2, 'b')",
        "SELECT * FROM kl.missing WHERE id = 7",
        "SELECT name FROM kl.t WHERE id = 2",
    ];
    let want: Vec<u64> = texts
        .iter()
        .chain(&texts)
        .map(|t| 5 + t.len() as u64)
        .collect();
    let got: Vec<u64> = sizes
        .iter()
        .map(|r| r["request_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    let err = agent.query_json(&format!(
        "SELECT error_message, protocol FROM calls WHERE dst_port = {port} AND status = '1146' AND role = 'client'"
    ));
    assert_eq!(err[0]["protocol"], "mysql");
    assert_eq!(err[0]["error_message"], "Table 'kl.missing' doesn't exist");
    // The syntax error's message keeps its words, not the quoted rest of the statement.
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND status = '1064'"),
        2,
    );
    let err = agent.query_json(&format!(
        "SELECT resource, error_message FROM calls WHERE dst_port = {port} AND status = '1064' AND role = 'client'"
    ));
    assert_eq!(err[0]["resource"], "SELECT ? FORM DUAL WHERE ? = ?");
    assert_eq!(
        err[0]["error_message"],
        "You have an error in your SQL syntax; check the manual that corresponds to your \
         MariaDB server version for the right syntax to use near '?' at line 1"
    );
    assert_timing_sums(&agent, port);
    assert_no_secret(&agent, &["kl-secret-literal", "kl-secret-syntax"]);
}

/// A postgres server started through runuser: killing runuser would leave the postmaster
/// running, so it is stopped with pg_ctl.
struct PgServer {
    child: Child,
    data: std::path::PathBuf,
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .args([
                "-D",
                self.data.to_str().unwrap(),
                "stop",
                "-m",
                "immediate",
                "-w",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest PostgreSQL server binaries installed.
fn pg_bin(name: &str) -> std::path::PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql is required (scripts/setup.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    let bin = versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name);
    assert!(bin.exists(), "{} is required", bin.display());
    bin
}

#[test]
fn postgresql_simple_queries_errors_and_pgbench() {
    require_root();
    tool("psql");
    tool("pgbench");
    tool("runuser");
    let dir = tempdir("kl-pg");
    run_ok(Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]));
    let data = dir.join("data");
    run_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
            ]),
    );
    let port = support::host::free_port();
    let _server = PgServer {
        child: Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("postgres"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-p",
                &port.to_string(),
                "-k",
                dir.to_str().unwrap(),
            ])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn postgres"),
        data: data.clone(),
    };
    wait_listening(port, "postgres");
    let p = port.to_string();
    let psql = |q: &str| {
        Command::new("psql")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &p,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tA",
                "-c",
                q,
            ])
            .output()
            .unwrap()
    };
    // pgbench's tables first (not observed: the agent starts after).
    run_ok(Command::new("pgbench").args([
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "-U",
        "postgres",
        "-i",
        "-s",
        "1",
        "-q",
        "postgres",
    ]));
    let agent = AgentProcess::start("l7-pg", &[]);
    assert!(
        psql("CREATE TABLE kl_t (id int, name text)")
            .status
            .success()
    );
    assert!(
        psql("INSERT INTO kl_t VALUES (1, 'kl-secret-literal')")
            .status
            .success()
    );
    assert!(
        !psql("SELECT * FROM kl_missing WHERE id = 7")
            .status
            .success()
    );
    let out = psql("SELECT name FROM kl_t WHERE id = 1");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kl-secret-literal"
    );
    // An error whose message quotes a literal of the statement.
    assert!(!psql("SELECT 'kl-secret-cast'::int").status.success());
    // 300 select-only transactions on one connection, simple protocol.
    run_ok(Command::new("pgbench").args([
        "-h",
        "127.0.0.1",
        "-p",
        &p,
        "-U",
        "postgres",
        "-S",
        "-n",
        "-c",
        "1",
        "-t",
        "300",
        "postgres",
    ]));

    let count = format!(
        "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND resource LIKE '%kl%' AND resource NOT LIKE '%pgbench%'"
    );
    wait_count(&agent, &count, 2 * 4);
    for role in ["client", "server"] {
        let rows = call_rows(
            &agent,
            port,
            role,
            "AND resource LIKE '%kl%' AND resource NOT LIKE '%pgbench%'",
        );
        assert_eq!(
            rows,
            owned(&[
                ("CREATE", "CREATE TABLE kl_t (id int, name text)", "", false),
                ("INSERT", "INSERT INTO kl_t VALUES (?, ?)", "", false),
                (
                    "SELECT",
                    "SELECT * FROM kl_missing WHERE id = ?",
                    "42P01",
                    true
                ),
                ("SELECT", "SELECT name FROM kl_t WHERE id = ?", "", false),
            ]),
            "{role}"
        );
    }
    let bench = "SELECT abalance FROM pgbench_accounts WHERE aid = ?";
    wait_count(
        &agent,
        &format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND resource = '{bench};'"
        ),
        2 * 300,
    );
    let err = agent.query_json(&format!(
        "SELECT error_message FROM calls WHERE dst_port = {port} AND status = '42P01' AND role = 'client'"
    ));
    assert_eq!(
        err[0]["error_message"],
        "relation \"kl_missing\" does not exist"
    );
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND status = '22P02'"),
        2,
    );
    let err = agent.query_json(&format!(
        "SELECT resource, error_message FROM calls WHERE dst_port = {port} AND status = '22P02' AND role = 'client'"
    ));
    assert_eq!(err[0]["resource"], "SELECT ?::int");
    assert_eq!(
        err[0]["error_message"],
        "invalid input syntax for type integer: \"?\""
    );
    assert_timing_sums(&agent, port);
    assert_no_secret(&agent, &["kl-secret-literal", "kl-secret-cast"]);
}

/// dnsmasq on a free port of 127.0.0.1, answering kl-test.example (and every name under it)
/// with 10.1.2.3 and authoritative-local for nx.example.
fn dnsmasq() -> (Killed, u16) {
    let port = support::host::free_port();
    let dnsmasq = Killed(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=127.0.0.1",
                &format!("--port={port}"),
                "--user=root",
            ])
            .args([
                "--address=/kl-test.example/10.1.2.3",
                "--local=/nx.example/",
                "--pid-file=",
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq"),
    );
    wait_listening(port, "dnsmasq");
    (dnsmasq, port)
}

/// A DNS query for an A record of `name`, with id `id` and recursion desired.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn dns_lookups_batched_in_sendmmsg_and_recvmmsg_are_each_a_call() {
    require_root();
    tool("dnsmasq");
    let (_dnsmasq, port) = dnsmasq();
    let agent = AgentProcess::start("l7-mmsg", &[]);
    // This test is the client: one unconnected UDP socket sends four queries with one
    // sendmmsg (each message names dnsmasq) and reads the four answers with one recvmmsg,
    // twice over the same message arrays. The kernel reports each message on its own; which
    // message of the batch it is comes from a per-thread cursor in the programs.
    let names = [
        "a.kl-test.example",
        "b.kl-test.example",
        "c.kl-test.example",
        "d.kl-test.example",
    ];
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let client_port = socket.local_addr().unwrap().port();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: zeroed sockaddr_in is valid; the fields are set below.
    let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    to.sin_family = libc::AF_INET as libc::sa_family_t;
    to.sin_port = port.to_be();
    to.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    let mut queries: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| dns_query(0x4b00 + i as u16, name))
        .collect();
    let mut answers = vec![[0u8; 512]; names.len()];
    let mut from: Vec<libc::sockaddr_in> = vec![
        // SAFETY: as above.
        unsafe { std::mem::zeroed() };
        names.len()
    ];
    let mut send_iov: Vec<libc::iovec> = queries
        .iter_mut()
        .map(|q| libc::iovec {
            iov_base: q.as_mut_ptr().cast(),
            iov_len: q.len(),
        })
        .collect();
    let mut recv_iov: Vec<libc::iovec> = answers
        .iter_mut()
        .map(|a| libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        })
        .collect();
    let mmsg = |iov: &mut libc::iovec, name: *mut libc::sockaddr_in| {
        // SAFETY: a zeroed mmsghdr is valid; the pointers outlive the syscalls below.
        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
        m.msg_hdr.msg_name = name.cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        m
    };
    let mut sends: Vec<libc::mmsghdr> = send_iov
        .iter_mut()
        .map(|iov| mmsg(iov, &raw mut to))
        .collect();
    let mut recvs: Vec<libc::mmsghdr> = recv_iov
        .iter_mut()
        .zip(from.iter_mut())
        .map(|(iov, name)| mmsg(iov, name))
        .collect();
    let n = names.len() as u32;
    for round in 0..2 {
        // SAFETY: the arrays hold `n` valid messages.
        let sent = unsafe { libc::sendmmsg(fd, sends.as_mut_ptr(), n, 0) };
        assert_eq!(sent, n as i32, "sendmmsg, round {round}");
        let mut got = 0;
        while got < n {
            // SAFETY: as above; a blocking call returns once the rest have come (or times out).
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    recvs.as_mut_ptr().add(got as usize),
                    n - got,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            assert!(
                r > 0,
                "recvmmsg, round {round}: {}",
                std::io::Error::last_os_error()
            );
            got += r as u32;
        }
    }
    // Every lookup is a client call (this process) and a server call (dnsmasq), named by its
    // domain, between the client's port and dnsmasq's.
    let sql = format!(
        "SELECT role, resource, src_port, count(*) AS n FROM calls WHERE protocol = 'dns' \
         AND dst_port = {port} GROUP BY role, resource, src_port ORDER BY role, resource"
    );
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE protocol = 'dns' AND dst_port = {port}"),
        16,
    );
    let got: Vec<(String, String, u64, u64)> = agent
        .query_json(&sql)
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_owned(),
                r["resource"].as_str().unwrap().to_owned(),
                r["src_port"].as_u64().unwrap(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<_> = ["client", "server"]
        .iter()
        .flat_map(|role| {
            names.iter().map(move |name| {
                (
                    role.to_string(),
                    name.to_string(),
                    u64::from(client_port),
                    2,
                )
            })
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn dns_answers_nxdomain_and_timeouts() {
    require_root();
    tool("dnsmasq");
    tool("dig");
    // dnsmasq answers kl-test.example itself and is authoritative-local for nx.example.
    let (_dnsmasq, port) = dnsmasq();
    // A UDP port that reads queries and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let agent = AgentProcess::start("l7-dns", &["--dns-timeout", "1"]);
    let dig = |port: u16, name: &str| {
        Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                name,
                "A",
                "+tries=1",
                "+time=1",
                "+short",
            ])
            .output()
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(
            String::from_utf8_lossy(&dig(port, "kl-test.example").stdout).trim(),
            "10.1.2.3"
        );
    }
    for _ in 0..2 {
        dig(port, "missing.nx.example");
    }
    dig(silent_port, "silent.example");

    // The timeout row comes after --dns-timeout (1 s), last.
    let timeouts = "SELECT count(*) AS n FROM dns WHERE domain = 'silent.example' \
                    AND rcode = 'TIMEOUT'";
    wait_count(&agent, timeouts, 1);
    let q = "SELECT count(*) AS n FROM dns WHERE domain LIKE '%example'";
    wait_count(&agent, q, 6);
    let rows = agent.query_json(
        "SELECT domain, qtype, rcode, answers, server_ip, transport, comm, latency_ns FROM dns \
         WHERE domain LIKE '%example' ORDER BY ts",
    );
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["domain"].as_str().unwrap().to_owned(),
                r["rcode"].as_str().unwrap().to_owned(),
                r["answers"].as_str().unwrap().to_owned(),
                r["transport"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // (dig's sockets are used by its network threads, so comm is a thread name, not "dig".)
    let row =
        |d: &str, rc: &str, a: &str| (d.to_owned(), rc.to_owned(), a.to_owned(), "udp".to_owned());
    assert_eq!(
        got,
        [
            row("kl-test.example", "NOERROR", "10.1.2.3"),
            row("kl-test.example", "NOERROR", "10.1.2.3"),
            row("kl-test.example", "NOERROR", "10.1.2.3"),
            row("missing.nx.example", "NXDOMAIN", ""),
            row("missing.nx.example", "NXDOMAIN", ""),
            row("silent.example", "TIMEOUT", ""),
        ]
    );
    assert!(
        rows[..5]
            .iter()
            .all(|r| r["latency_ns"].as_u64().unwrap() > 0 && r["qtype"] == "A")
    );
    assert!(rows[5]["latency_ns"].is_null());
    assert!(rows.iter().all(|r| r["server_ip"] == "127.0.0.1"));
    // The dig client's calls rows: the same five answered lookups, NXDOMAIN as errors.
    let calls = agent.query_json(&format!(
        "SELECT count(*) AS n, sum(CAST(is_error AS INT)) AS errors FROM calls \
         WHERE protocol = 'dns' AND role = 'client' AND dst_port = {port}"
    ));
    assert_eq!(
        (calls[0]["n"].as_u64(), calls[0]["errors"].as_i64()),
        (Some(5), Some(2))
    );
    // dnsmasq's server rows: it reads each query with recvmsg on an unconnected socket, where
    // the kernel writes the sender's address after the socket tracepoint; each of the five
    // rows names the dig socket that asked (the same ports as the client rows).
    let ports = |role: &str| -> Vec<(u64, u64)> {
        agent
            .query_json(&format!(
                "SELECT src_port, dst_port FROM calls WHERE protocol = 'dns' \
                 AND role = '{role}' AND dst_port = {port} ORDER BY src_port"
            ))
            .iter()
            .map(|r| {
                (
                    r["src_port"].as_u64().unwrap(),
                    r["dst_port"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    wait_count(
        &agent,
        &format!(
            "SELECT count(*) AS n FROM calls WHERE protocol = 'dns' AND role = 'server' \
             AND dst_port = {port}"
        ),
        5,
    );
    let client = ports("client");
    assert_eq!(client.len(), 5);
    assert!(client.iter().all(|&(src, _)| src != 0));
    assert_eq!(ports("server"), client);
    drop(silent);
}

#[test]
fn payload_prefixes_only_when_asked_and_credentials_masked() {
    require_root();
    tool("curl");
    let (_server, port) = start_server(Command::new("python3").arg(fixture("http_server.py")));
    let url = format!("http://127.0.0.1:{port}/ok?x=1");
    let auth = ["-H", "Authorization: Bearer kl-secret-token"];
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    let payload_sql = format!(
        "SELECT role, request_payload, response_payload FROM calls WHERE dst_port = {port} ORDER BY role"
    );
    // One request with a credential header; its two rows (client and server).
    let one_call = |agent: &AgentProcess| {
        curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} 0 0 0 0 0\n",
            auth[0],
            auth[1],
            &url,
        ]);
        wait_count(agent, &count, 2);
        let rows = agent.query_json(&payload_sql);
        assert_eq!(rows.len(), 2);
        rows
    };
    // By default: no payload in any row.
    {
        let agent = AgentProcess::start("l7-nopayload", &[]);
        assert!(
            one_call(&agent)
                .iter()
                .all(|r| r["request_payload"].is_null() && r["response_payload"].is_null())
        );
    }
    let agent = AgentProcess::start("l7-payload", &["--store-payloads"]);
    let rows = one_call(&agent);
    for r in &rows {
        let req = r["request_payload"].as_str().unwrap();
        let resp = r["response_payload"].as_str().unwrap();
        assert!(req.starts_with("GET /ok?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("\r\nAuthorization: ***\r\n") && !req.contains("kl-secret"),
            "{req}"
        );
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    }
}

#[test]
fn redis_benchmark_pipelined_counts_every_command() {
    require_root();
    tool("redis-server");
    tool("redis-benchmark");
    let port = support::host::free_port();
    let _server = start_redis(port);
    let agent = AgentProcess::start("l7-redis-bench", &[]);
    // 16 commands per write (about 800 bytes: within the 1 KiB capture), 2 connections.
    run_ok(Command::new("redis-benchmark").args([
        "-p",
        &port.to_string(),
        "-n",
        "3200",
        "-c",
        "2",
        "-P",
        "16",
        "-t",
        "set,get",
        "-d",
        "3",
        "-q",
    ]));
    let sql = format!(
        "SELECT role, method, count(*) AS n FROM calls WHERE dst_port = {port} \
         AND method IN ('SET', 'GET') GROUP BY role, method ORDER BY role, method"
    );
    wait_count(
        &agent,
        &format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND method IN ('SET', 'GET')"
        ),
        4 * 3200,
    );
    let got: Vec<(String, String, u64)> = agent
        .query_json(&sql)
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_owned(),
                r["method"].as_str().unwrap().to_owned(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("client", "GET"),
        ("client", "SET"),
        ("server", "GET"),
        ("server", "SET"),
    ]
    .map(|(r, m)| (r.to_owned(), m.to_owned(), 3200));
    assert_eq!(got, want);
    let stats = agent.query_json(
        "SELECT unparsed, truncated, unmatched FROM protocol_stats WHERE protocol = 'redis'",
    );
    assert_eq!(
        (
            stats[0]["unparsed"].as_u64(),
            stats[0]["unmatched"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_timing_sums(&agent, port);
}

#[test]
fn wrk_keep_alive_load_matches_the_server_count() {
    require_root();
    tool("wrk");
    let (_server, port) = start_server(Command::new("python3").arg(fixture("http_server.py")));
    // Small chunks: the calls are read back from compressed chunks.
    let agent = AgentProcess::start("l7-wrk", &["--chunk-rows", "64"]);
    let out = run_ok(Command::new("wrk").args([
        "-t1",
        "-c4",
        "-d2s",
        &format!("http://127.0.0.1:{port}/ok"),
    ]));
    // "N requests in 2.00s, ..." counts completed responses.
    let done: u64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"));
    assert!(done > 100, "{out}");
    let server =
        format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND role = 'server'");
    wait_count(&agent, &server, done);
    // The store-compress thread packs sealed chunks a few times a second: wait until every
    // sealed chunk of `calls` is compressed (the open one stays plain), then count through them.
    // More than 100 responses are more than 200 rows: at least three chunks of 64.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = agent.query_json(
            "SELECT chunks_held AS held, chunks_compressed AS packed FROM agent_stats \
             WHERE table_name = 'calls'",
        );
        let (held, packed) = (
            c[0]["held"].as_u64().unwrap(),
            c[0]["packed"].as_u64().unwrap(),
        );
        if packed >= 2 && held - packed <= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{packed} of {held} chunks compressed after 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // wrk stops with up to one request in flight per connection: the server may have answered
    // those too (4 connections), and no call may be missing.
    for role in ["server", "client"] {
        let n = agent.query_json(&format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND role = '{role}' \
             AND method = 'GET' AND resource = '/ok' AND status = '200'"
        ))[0]["n"]
            .as_u64()
            .unwrap();
        assert!(
            (done..=done + 4).contains(&n),
            "{role}: {n} calls for {done} responses"
        );
    }
    let dropped = agent.query_json("SELECT max(events_dropped) AS d FROM agent_stats");
    assert_eq!(dropped[0]["d"].as_u64(), Some(0));
    assert_timing_sums(&agent, port);
}

/// Requests sent with sendmsg of two buffers and read with readv and recvmsg into two
/// buffers, answered with writev and sendmsg of two (tests/fixtures/syscall_shapes.py): every
/// row's captured request and response are exactly the bytes that moved, buffer after buffer,
/// and never memory past a buffer's end (the fixture surrounds each with '#' bytes).
#[test]
fn vectored_syscalls_are_captured_buffer_by_buffer() {
    require_root();
    let (_server, port) =
        start_server(Command::new("python3").args([&fixture("syscall_shapes.py"), "server"]));
    let agent = AgentProcess::start("l7-shapes", &["--store-payloads"]);
    let n = 4;
    let out = run_ok(Command::new("python3").args([
        &fixture("syscall_shapes.py"),
        "client",
        &port.to_string(),
        &n.to_string(),
    ]));
    // The client prints each exchange as two Python byte literals.
    let unliteral = |s: &str| -> String {
        s.trim_start_matches("b'")
            .trim_end_matches('\'')
            .replace("\\r", "\r")
            .replace("\\n", "\n")
    };
    let exchanges: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (req, resp) = l.split_once("' b'").expect("two literals");
            (unliteral(req), unliteral(resp))
        })
        .collect();
    assert_eq!(exchanges.len(), n);
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 2 * n as u64);
    let rows = agent.query_json(&format!(
        "SELECT role, comm, resource, request_payload, response_payload, request_bytes, \
                response_bytes FROM calls WHERE dst_port = {port} ORDER BY role, ts"
    ));
    let (clients, servers) = rows.split_at(n);
    for side in [clients, servers] {
        for (r, (req, resp)) in side.iter().zip(&exchanges) {
            assert_eq!(r["comm"], "kl-shapes", "{r}");
            assert_eq!(r["request_payload"].as_str(), Some(req.as_str()), "{r}");
            assert_eq!(r["response_payload"].as_str(), Some(resp.as_str()), "{r}");
            assert_eq!(r["request_bytes"].as_u64(), Some(req.len() as u64), "{r}");
            assert_eq!(r["response_bytes"].as_u64(), Some(resp.len() as u64), "{r}");
        }
        let resources: Vec<_> = side
            .iter()
            .map(|r| r["resource"].as_str().unwrap())
            .collect();
        assert_eq!(resources, ["/shape/0", "/shape/1", "/shape/2", "/shape/3"]);
    }
}

/// A socket's fd number reused for a file without close(2) (dup2 over it): what is written to
/// and read from the file through that number is no traffic of the old socket. Only the real
/// request makes calls.
#[test]
fn a_file_behind_a_reused_socket_fd_makes_no_call() {
    require_root();
    let (_server, port) =
        start_server(Command::new("python3").args([&fixture("syscall_shapes.py"), "server"]));
    let agent = AgentProcess::start("l7-fd-reuse", &[]);
    let out = run_ok(Command::new("python3").args([
        &fixture("syscall_shapes.py"),
        "reuse",
        &port.to_string(),
    ]));
    assert_eq!(out.trim(), "done");
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 2);
    let rows =
        agent.query_json("SELECT role, resource FROM calls WHERE comm = 'kl-shapes' ORDER BY role");
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r["role"].as_str().unwrap(), r["resource"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("client", "/real"), ("server", "/real")]);
}

/// Rows of `calls` for the server on `port` with this `role`, as (protocol, method, resource,
/// status, is_error, error_message, response_bytes), ordered by `order`.
fn h2_rows(
    agent: &AgentProcess,
    port: u16,
    role: &str,
    order: &str,
) -> Vec<(String, String, String, String, bool, String, u64)> {
    agent
        .query_json(&format!(
            "SELECT protocol, method, resource, status, is_error, \
             coalesce(error_message, '') AS error_message, response_bytes FROM calls \
             WHERE dst_port = {port} AND role = '{role}' ORDER BY {order}"
        ))
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (
                s("protocol"),
                s("method"),
                s("resource"),
                s("status"),
                r["is_error"].as_bool().unwrap(),
                s("error_message"),
                r["response_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// nghttp2's own server and clients over h2c (prior knowledge): concurrent streams on one
/// connection, a 404, three requests from curl, and 200 requests from h2load over two connections with four streams in
/// flight on each (every write within the capture size: what is lost beyond it is the
/// parser's unit tests' subject). Every stream is one call on each end,
/// with its status, body bytes and trace id; no header value but those is stored.
#[test]
fn http2_streams_of_nghttp_and_h2load_are_calls_on_both_ends() {
    require_root();
    for t in ["nghttpd", "nghttp", "h2load"] {
        tool(t);
    }
    let agent = AgentProcess::start("l7-h2", &[]);
    let files = [("a.txt", 12), ("b.txt", 300), ("c.txt", 40), ("d.txt", 77)];
    let (_server, _www, port) = start_nghttpd("kl-h2-www", &files);
    let base = format!("http://127.0.0.1:{port}");
    // One connection, three streams requested at once; -s prints each response's size.
    let out = run_ok(Command::new("nghttp").args([
        "-ns",
        "-H",
        &format!("traceparent: {TRACEPARENT}"),
        "-H",
        "authorization: Bearer kl-h2-secret",
        &format!("{base}/a.txt"),
        &format!("{base}/b.txt"),
        &format!("{base}/missing"),
    ]));
    // "id  responseEnd requestStart  process code size request path"
    let sizes: Vec<(String, u16, u64)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let code = f.get(4)?.parse().ok()?;
            Some((f.get(6)?.to_string(), code, f[5].parse().ok()?))
        })
        .collect();
    let not_found = sizes
        .iter()
        .find(|(path, code, _)| path == "/missing" && *code == 404)
        .unwrap_or_else(|| panic!("no 404 in nghttp's output:\n{out}"))
        .2;
    // curl with prior knowledge, three times.
    let d = format!("{base}/d.txt");
    for _ in 0..3 {
        let out = run_ok(Command::new("curl").args([
            "--http2-prior-knowledge",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code} %{size_download}",
            &d,
        ]));
        assert_eq!(out, "2 200 77");
    }
    let h2load = run_ok(Command::new("h2load").args([
        "-n",
        "200",
        "-c",
        "2",
        "-m",
        "4",
        &format!("{base}/c.txt"),
    ]));
    assert!(h2load.contains("200 succeeded"), "{h2load}");
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 2 * (3 + 3 + 200));

    let call = |resource: &str, status: &str, bytes: u64| {
        let error = status.starts_with('4');
        (
            "http2".to_owned(),
            "GET".to_owned(),
            resource.to_owned(),
            status.to_owned(),
            error,
            String::new(),
            bytes,
        )
    };
    let first = [
        call("/a.txt", "200", 12),
        call("/b.txt", "200", 300),
        call("/missing", "404", not_found),
    ];
    for role in ["client", "server"] {
        let rows: Vec<_> = h2_rows(&agent, port, role, "resource")
            .into_iter()
            .filter(|r| r.2 != "/c.txt" && r.2 != "/d.txt")
            .collect();
        assert_eq!(rows, first, "{role}");
        let traced = agent.query_json(&format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND role = '{role}' \
             AND trace_id = '0af7651916cd43dd8448eb211c80319c'"
        ));
        assert_eq!(traced[0]["n"].as_u64(), Some(3), "{role}");
        let load = agent.query_json(&format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND role = '{role}' \
             AND resource = '/c.txt' AND status = '200' AND response_bytes = 40"
        ));
        assert_eq!(load[0]["n"].as_u64(), Some(200), "{role}");
        let curl = agent.query_json(&format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} AND role = '{role}' \
             AND resource = '/d.txt' AND status = '200' AND response_bytes = 77"
        ));
        assert_eq!(curl[0]["n"].as_u64(), Some(3), "{role}");
    }
    assert_timing_sums(&agent, port);
    assert_no_secret(&agent, &["kl-h2-secret"]);
}

/// An nghttpd (h2c with prior knowledge) serving `files` (name, size: that many `k` bytes) from
/// a new directory named after `dir` (removed when the returned guard drops), and its port.
fn start_nghttpd(dir: &str, files: &[(&str, usize)]) -> (Killed, support::host::TempDir, u16) {
    start_nghttpd_with(dir, files, false)
}

/// nghttpd serving `files` (name, bytes of `k`) from a new directory `dir`, over TLS (a
/// self-signed certificate made in `dir`; nghttpd links the system's OpenSSL) or h2c.
fn start_nghttpd_with(
    name: &str,
    files: &[(&str, usize)],
    tls: bool,
) -> (Killed, support::host::TempDir, u16) {
    let dir = tempdir(name);
    for (name, size) in files {
        std::fs::write(dir.join(name), vec![b'k'; *size]).unwrap();
    }
    let port = support::host::free_port();
    let mut command = Command::new("nghttpd");
    command.arg("-d").arg(&*dir).arg(port.to_string());
    // Beside the served files, not among them; read once nghttpd listens.
    let keys = tls.then(|| tempdir(&format!("{name}-tls")));
    if let Some(keys) = &keys {
        let (cert, key) = self_signed(keys);
        command.args([key, cert]);
    } else {
        command.arg("--no-tls");
    }
    let server = Killed(
        command
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn nghttpd"),
    );
    wait_listening(port, "nghttpd");
    (server, dir, port)
}

/// HTTP/2 over TLS (ALPN `h2`) through the system's OpenSSL on both ends: nghttpd with a
/// self-signed certificate, nghttp with three streams on one connection (two files and a 404)
/// and curl --http2. The plaintext the uprobes read starts with the client preface, so each
/// stream is an `http2` call on each end, with its path, status and DATA bytes.
#[test]
fn http2_over_tls_is_http2_calls_on_both_ends() {
    require_root();
    for t in ["nghttpd", "nghttp", "curl"] {
        tool(t);
    }
    let agent = AgentProcess::start("l7-h2-tls", &[]);
    let files = [("a.txt", 17), ("b.txt", 5000)];
    let (_server, _www, port) = start_nghttpd_with("kl-h2-tls-www", &files, true);
    let url = |path: &str| format!("https://127.0.0.1:{port}/{path}");
    run_ok(Command::new("nghttp").args(["-n", &url("a.txt"), &url("b.txt"), &url("nope")]));
    let out = run_ok(Command::new("curl").args([
        "-sk",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code} %{size_download}",
        &url("a.txt"),
    ]));
    assert_eq!(out, "2 200 17");
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 8);
    for role in ["client", "server"] {
        let rows = h2_rows(&agent, port, role, "ts");
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.0.as_str(), r.2.as_str(), r.3.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("http2", "/a.txt", "200"),
                ("http2", "/b.txt", "200"),
                ("http2", "/nope", "404"),
                ("http2", "/a.txt", "200"),
            ],
            "{role}"
        );
        let bytes: Vec<u64> = rows.iter().map(|r| r.6).collect();
        assert_eq!([bytes[0], bytes[1], bytes[3]], [17, 5000, 17], "{role}");
    }
    // The 404's body is nghttpd's own page: the same size on both ends.
    let nope = format!(
        "SELECT count(DISTINCT response_bytes) AS n FROM calls WHERE dst_port = {port} \
         AND resource = '/nope'"
    );
    assert_eq!(agent.query_json(&nope)[0]["n"].as_u64(), Some(1));
    assert_timing_sums(&agent, port);
}

/// HTTP/1.1 connections upgraded to h2c (RFC 7540, 3.2) are HTTP/2 calls on both ends, the
/// upgrade request included: nghttpx (which accepts the upgrade; nghttpd does not) in front of
/// an nghttpd, curl --http2 on an http:// URL twice, and nghttp -u with three streams, the
/// first of them the upgrade's.
#[test]
fn http1_connections_upgraded_to_h2c_are_http2_calls_on_both_ends() {
    require_root();
    for t in ["nghttpd", "nghttpx", "nghttp", "curl"] {
        tool(t);
    }
    let agent = AgentProcess::start("l7-h2c", &[]);
    let files = [("e.txt", 55), ("f.txt", 23), ("g.txt", 31), ("h.txt", 5)];
    let (_backend, _www, backend) = start_nghttpd("kl-h2c-www", &files);
    let port = support::host::free_port();
    let _frontend = Killed(
        Command::new("nghttpx")
            .args([
                "--conf=/dev/null",
                &format!("--frontend=127.0.0.1,{port};no-tls"),
                &format!("--backend=127.0.0.1,{backend};;proto=h2"),
                "--workers=1",
                "--log-level=WARN",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn nghttpx"),
    );
    wait_listening(port, "nghttpx");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..2 {
        let out = run_ok(Command::new("curl").args([
            "--http2",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code} %{size_download}",
            &format!("{base}/e.txt"),
        ]));
        assert_eq!(out, "2 200 55");
    }
    let urls = ["f.txt", "g.txt", "h.txt"].map(|f| format!("{base}/{f}"));
    let out = run_ok(Command::new("nghttp").arg("-nsu").args(&urls));
    let served = out
        .lines()
        .filter(|l| l.contains(" 200 ") && l.trim_end().ends_with(".txt"))
        .count();
    assert_eq!(served, 3, "{out}");
    wait_count(
        &agent,
        &format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}"),
        2 * 5,
    );
    let call = |resource: &str, bytes: u64| {
        (
            "http2".to_owned(),
            "GET".to_owned(),
            resource.to_owned(),
            "200".to_owned(),
            false,
            String::new(),
            bytes,
        )
    };
    let expected = [
        call("/e.txt", 55),
        call("/e.txt", 55),
        call("/f.txt", 23),
        call("/g.txt", 31),
        call("/h.txt", 5),
    ];
    for role in ["client", "server"] {
        let rows = h2_rows(&agent, port, role, "resource");
        assert_eq!(rows, expected, "{role}");
    }
    // The upgrade requests were HTTP/1 on the wire: no call of the frontend is `http`, and
    // none was left unanswered.
    let http2 = agent.query_json(
        "SELECT calls, unmatched, unparsed FROM protocol_stats WHERE protocol = 'http2'",
    );
    assert_eq!(http2[0]["unmatched"].as_u64(), Some(0), "{http2:?}");
    assert_timing_sums(&agent, port);
}

/// Fails loudly without Python's grpcio, the real gRPC implementation these tests drive.
fn require_grpcio() {
    let check = Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .unwrap();
    assert!(
        check.success(),
        "python3 grpcio is required (scripts/setup.sh installs it)"
    );
}

/// An agent named `node`, then the grpcio test server, and the client's output for `requests`
/// (grpc_client.py's syntax) on one channel: (agent, server, its port, output).
fn grpc_exchange(node: &str, requests: &[&str]) -> (AgentProcess, Killed, u16, String) {
    require_root();
    require_grpcio();
    let agent = AgentProcess::start(node, &[]);
    let (server, port) = start_server(Command::new("python3").arg(fixture("grpc_server.py")));
    let out = run_ok(
        Command::new("python3")
            .arg(fixture("grpc_client.py"))
            .arg(port.to_string())
            .args(requests),
    );
    (agent, server, port, out)
}

/// A real gRPC server and client (grpcio) on one channel: unary calls answered OK and
/// NOT_FOUND with a message, a server stream of five messages, and a call the client cancels
/// while the server is still at it. Each call is one `grpc` row
/// on each end, with its gRPC status by name, the message of the error, the trace id of its
/// metadata and the message bytes (5-byte gRPC prefix included) each way.
#[test]
fn grpc_calls_of_grpcio_with_status_messages_and_streams() {
    let (agent, _server, port, out) = grpc_exchange(
        "l7-grpc",
        &["say:hello", "say:missing", "count:5", "say:bye", "slow:zzz"],
    );
    assert_eq!(
        out,
        "say OK 5\nsay NOT_FOUND 0\ncount OK 500\nsay OK 3\nslow CANCELLED 0\n"
    );
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 10);
    let call = |method: &str, status: &str, message: &str, bytes: u64| {
        (
            "grpc".to_owned(),
            "POST".to_owned(),
            format!("/kindling.test.Echo/{method}"),
            status.to_owned(),
            status != "OK",
            message.to_owned(),
            bytes,
        )
    };
    let want = [
        call("Say", "OK", "", 10),
        call("Say", "NOT_FOUND", "no such user: missing", 0),
        call("Count", "OK", "", 5 * 105),
        call("Say", "OK", "", 8),
        // The client cancelled it: RST_STREAM CANCEL, seen by both ends.
        call("Slow", "CANCEL", "stream reset: CANCEL", 0),
    ];
    for role in ["client", "server"] {
        assert_eq!(h2_rows(&agent, port, role, "ts"), want, "{role}");
        let requests = agent.query_json(&format!(
            "SELECT request_bytes AS n, trace_id FROM calls WHERE dst_port = {port} \
             AND role = '{role}' ORDER BY ts"
        ));
        let sizes: Vec<u64> = requests.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        assert_eq!(sizes, [10, 12, 6, 8, 8], "{role}");
        assert!(
            requests
                .iter()
                .all(|r| r["trace_id"] == "0af7651916cd43dd8448eb211c80319c")
        );
    }
    assert_timing_sums(&agent, port);
    assert_no_secret(&agent, &["kl-grpc-secret"]);
}

/// gRPC messages of a few KiB (grpcio's Say, echoing 3,000 and 12,000 bytes): each request
/// and answer is one write of HEADERS, DATA and trailers (or END_STREAM), far longer than the
/// 1 KiB captured from its start. The frames that end them are in the last bytes the kernel
/// side also captures (the tail): every call is one whole row on each end, with its status and
/// exact sizes, and the calls after them still read their indexed headers (no framing lost,
/// no table behind).
#[test]
fn grpc_messages_of_a_few_kib_are_whole_calls_on_both_ends() {
    let (agent, _server, port, out) = grpc_exchange(
        "l7-grpc-big",
        &["say:hello", "big:3000", "big:12000", "say:bye"],
    );
    assert_eq!(out, "say OK 5\nbig OK 3000\nbig OK 12000\nsay OK 3\n");
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 8);
    let say = |bytes: u64| {
        (
            "grpc".to_owned(),
            "POST".to_owned(),
            "/kindling.test.Echo/Say".to_owned(),
            "OK".to_owned(),
            false,
            String::new(),
            bytes,
        )
    };
    // Message bytes each way: the 5-byte gRPC prefix and the message.
    let want = [say(10), say(3005), say(12005), say(8)];
    for role in ["client", "server"] {
        assert_eq!(h2_rows(&agent, port, role, "ts"), want, "{role}");
        let requests = agent.query_json(&format!(
            "SELECT request_bytes AS n FROM calls WHERE dst_port = {port} AND role = '{role}' \
             ORDER BY ts"
        ));
        let sizes: Vec<u64> = requests.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        assert_eq!(sizes, [10, 3005, 12005, 8], "{role}");
    }
    let stats = agent.query_json(
        "SELECT unparsed, truncated, unknown_headers, unmatched FROM protocol_stats \
         WHERE protocol = 'http2'",
    );
    for column in ["unparsed", "truncated", "unknown_headers", "unmatched"] {
        assert_eq!(stats[0][column].as_u64(), Some(0), "{column}: {stats:?}");
    }
    assert_timing_sums(&agent, port);
}

/// A gRPC call left open (a Slow call the server does not answer) is listed in `open_calls` on
/// both ends while it is in flight, waiting since its request, and leaves it once the client
/// cancels it, as a `calls` row of its own.
#[test]
fn a_grpc_call_in_flight_is_listed_in_open_calls_until_it_ends() {
    use std::io::{BufRead, BufReader, Write};
    require_root();
    require_grpcio();
    let agent = AgentProcess::start("l7-grpc-open", &[]);
    let (_server, port) = start_server(Command::new("python3").arg(fixture("grpc_server.py")));
    let mut client = Killed(
        Command::new("python3")
            .args([&fixture("grpc_client.py"), &port.to_string(), "hold:zzz"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn grpc_client.py"),
    );
    let mut lines = BufReader::new(client.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "hold open");
    let open = format!(
        "SELECT count(*) AS n FROM open_calls WHERE dst_port = {port} AND protocol = 'grpc' \
         AND method = 'POST' AND resource = '/kindling.test.Echo/Slow' AND status = '' \
         AND NOT is_error AND duration_ns >= 1000000000 AND content_download_ns = 0 \
         AND request_sent_ns + waiting_ttfb_ns = duration_ns"
    );
    // Listed once in flight for a second, at the next half-second sweep.
    wait_count(&agent, &open, 2);
    let roles = agent.query_json(&format!(
        "SELECT role, trace_id FROM open_calls WHERE dst_port = {port} ORDER BY role"
    ));
    let roles: Vec<_> = roles
        .iter()
        .map(|r| (r["role"].as_str().unwrap(), r["trace_id"].as_str().unwrap()))
        .collect();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(roles, [("client", trace), ("server", trace)]);
    assert!(
        agent.query_json(&format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port}"
        ))[0]["n"]
            .as_u64()
            == Some(0),
        "no call ended yet"
    );
    writeln!(client.0.stdin.as_mut().unwrap(), "go").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "hold CANCELLED 0");
    wait_count(
        &agent,
        &format!(
            "SELECT count(*) AS n FROM calls WHERE dst_port = {port} \
             AND resource = '/kindling.test.Echo/Slow' AND status = 'CANCEL'"
        ),
        2,
    );
    let any_open = format!("SELECT count(*) AS n FROM open_calls WHERE dst_port = {port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while agent.query_json(&any_open)[0]["n"].as_u64() != Some(0) {
        assert!(
            Instant::now() < deadline,
            "still listed 15 s after it ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A gRPC channel (one HTTP/2 connection) that made calls before the agent started and more
/// after: the agent joins it after its preface, detects it from its frames, and follows every
/// later call with its timing, sizes and trace id (a literal in every request). What the
/// headers say through the HPACK static table or in literals is exact (`:method POST`);
/// fields that index dynamic table entries added before the agent joined are unknown, never
/// guessed: Say's path, the gRPC content type, and the OK calls' `grpc-status: 0` (their status
/// is empty, not the `:status 200` that would call any call a success). The failed call's
/// `grpc-status: 5`, new to the connection, is a literal: it is a `grpc` call, `NOT_FOUND`.
/// Count's path, first sent after the agent joined, is known.
#[test]
fn a_grpc_connection_opened_before_the_agent_is_followed_from_its_frames() {
    use std::io::{BufRead, BufReader, Write};
    require_root();
    require_grpcio();
    let (_server, port) = start_server(Command::new("python3").arg(fixture("grpc_server.py")));
    let mut client = Killed(
        Command::new("python3")
            .args([&fixture("grpc_client.py"), &port.to_string()])
            .args([
                "say:first",
                "say:second",
                "wait:",
                "say:hello",
                "say:missing",
                "count:3",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn grpc_client.py"),
    );
    let mut lines = BufReader::new(client.0.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    assert_eq!([next(), next()], ["say OK 5", "say OK 6"]);
    let agent = AgentProcess::start("l7-grpc-late", &[]);
    writeln!(client.0.stdin.as_mut().unwrap(), "go").unwrap();
    assert_eq!(
        [next(), next(), next()],
        ["say OK 5", "say NOT_FOUND 0", "count OK 300"]
    );
    let count = format!("SELECT count(*) AS n FROM calls WHERE dst_port = {port}");
    wait_count(&agent, &count, 6);
    for role in ["client", "server"] {
        let rows = agent.query_json(&format!(
            "SELECT protocol, method, resource, status, is_error, request_bytes, \
             response_bytes, trace_id FROM calls WHERE dst_port = {port} AND role = '{role}' \
             ORDER BY ts"
        ));
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?} {} {} {} {}",
                    r["protocol"].as_str().unwrap(),
                    r["method"].as_str().unwrap(),
                    r["resource"].as_str().unwrap(),
                    r["status"].as_str().unwrap(),
                    r["is_error"],
                    r["request_bytes"],
                    r["response_bytes"],
                    r["trace_id"].as_str().unwrap(),
                )
            })
            .collect();
        let trace = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(
            got,
            [
                format!("http2 POST \"\" \"\" false 10 10 {trace}"),
                format!("grpc POST \"\" \"NOT_FOUND\" true 12 0 {trace}"),
                format!("http2 POST \"/kindling.test.Echo/Count\" \"\" false 6 315 {trace}"),
            ],
            "{role}"
        );
    }
    // Each message with a field left empty above (on each end: the first call's request path
    // and response status, the second's path, the third's status) had unknown entries, not a
    // cut block: 4 per end in `unknown_headers`, none in `truncated`.
    let stats = agent.query_json(
        "SELECT truncated, unknown_headers FROM protocol_stats WHERE protocol = 'http2'",
    );
    assert_eq!(stats[0]["truncated"].as_u64(), Some(0), "{stats:?}");
    assert_eq!(
        stats[0]["unknown_headers"].as_u64(),
        Some(2 * 4),
        "{stats:?}"
    );
}
