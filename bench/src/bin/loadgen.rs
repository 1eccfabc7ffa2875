//! A fixed-rate HTTP/1.1 load generator for the agent-cost and ingest benchmarks (wrk in
//! Debian only saturates; these benchmarks need a steady, known request rate).
//!
//! CONNS keep-alive connections each send GET requests on a fixed schedule, together RATE
//! requests/s for SECONDS. A request whose turn comes while its connection is still waiting is
//! sent late, as soon as it can be: the schedule never stretches, nothing is sent after SECONDS,
//! and latency is measured from the scheduled time (no coordinated omission). Prints one line
//! of JSON:
//!
//!   loadgen HOST:PORT PATH RATE SECONDS CONNS
//!
//! `requests` counts the responses read whole, `errors` the connections that failed (each ends
//! its thread), `late` the requests sent more than one interval after their turn.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

/// What one connection did.
#[derive(Debug, Default)]
struct ConnResult {
    requests: u64,
    late: u64,
    error: Option<String>,
    /// Microseconds from each request's scheduled time to the end of its response.
    latencies_us: Vec<u32>,
}

/// Reads one HTTP/1.1 response with a Content-Length from `stream`; `buf` keeps any bytes
/// read past it (none with one request in flight).
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head =
                std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!(
                    "unexpected response: {}",
                    head.lines().next().unwrap_or("")
                ));
            }
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or("response without Content-Length")?;
            let total = end + 4 + length;
            while buf.len() < total {
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed mid-response".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(());
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One connection's schedule: requests at `first`, `first + interval`, ... until `end`.
fn run_conn(
    addr: SocketAddr,
    request: &[u8],
    first: Instant,
    interval: Duration,
    end: Instant,
) -> ConnResult {
    let mut result = ConnResult::default();
    let mut stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            result.error = Some(format!("connect {addr}: {e}"));
            return result;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::with_capacity(8192);
    let mut due = first;
    // A connection that falls behind stops at `end` too: the requests it did not send show
    // as an achieved rate below the target.
    while due < end && Instant::now() < end {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else if now - due > interval {
            result.late += 1;
        }
        if let Err(e) = stream.write_all(request) {
            result.error = Some(format!("write: {e}"));
            break;
        }
        if let Err(e) = read_response(&mut stream, &mut buf) {
            result.error = Some(e);
            break;
        }
        result.requests += 1;
        let us = Instant::now().saturating_duration_since(due).as_micros();
        result
            .latencies_us
            .push(u32::try_from(us).unwrap_or(u32::MAX));
        due += interval;
    }
    result
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path, rate, seconds, conns] = args.as_slice() else {
        eprintln!("usage: loadgen HOST:PORT PATH RATE SECONDS CONNS");
        return ExitCode::from(2);
    };
    let parsed = (
        addr.parse::<SocketAddr>(),
        rate.parse::<f64>(),
        seconds.parse::<f64>(),
        conns.parse::<u32>(),
    );
    let (Ok(addr), Ok(rate), Ok(seconds), Ok(conns)) = parsed else {
        eprintln!("loadgen: bad arguments {args:?}");
        return ExitCode::from(2);
    };
    if !(rate > 0.0 && seconds > 0.0 && conns > 0) {
        eprintln!("loadgen: RATE, SECONDS and CONNS must be positive");
        return ExitCode::from(2);
    }
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kindling-loadgen\r\n\r\n");
    // Each connection sends every `interval`; connection i starts i/CONNS of an interval late,
    // so the requests of all connections interleave evenly.
    let interval = Duration::from_secs_f64(f64::from(conns) / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let request = request.clone().into_bytes();
            let first = start + interval.mul_f64(f64::from(i) / f64::from(conns));
            thread::spawn(move || run_conn(addr, &request, first, interval, end))
        })
        .collect();
    let mut requests = 0;
    let mut late = 0;
    let mut errors = Vec::new();
    let mut latencies = Vec::new();
    for h in handles {
        let r = h.join().unwrap_or_else(|_| ConnResult {
            error: Some("connection thread panicked".into()),
            ..ConnResult::default()
        });
        requests += r.requests;
        late += r.late;
        errors.extend(r.error);
        latencies.extend(r.latencies_us);
    }
    latencies.sort_unstable();
    println!(
        "{{\"target_rate\": {rate}, \"seconds\": {seconds}, \"conns\": {conns}, \"requests\": {requests}, \
         \"achieved_rate\": {:.1}, \"late\": {late}, \"errors\": {}, \"p50_us\": {}, \"p99_us\": {}, \
         \"first_error\": {:?}}}",
        requests as f64 / seconds,
        errors.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        errors.first().map(String::as_str).unwrap_or(""),
    );
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
