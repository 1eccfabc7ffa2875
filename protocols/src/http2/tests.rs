use loona_hpack::Encoder;

use super::*;
use crate::test_support::{Step, feed_all, req, resp};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS with END_HEADERS (and END_STREAM when `end`), its block from `encoder`.
fn headers(encoder: &mut Encoder<'_>, stream: u32, end: bool, fields: &[(&str, &str)]) -> Vec<u8> {
    let block = encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    let flags = END_HEADERS | if end { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &block)
}

fn data(stream: u32, end: bool, payload: &[u8]) -> Vec<u8> {
    frame(DATA, if end { END_STREAM } else { 0 }, stream, payload)
}

/// The preface and an empty SETTINGS frame, as a client opens.
fn client_start() -> Vec<u8> {
    let mut b = PREFACE.to_vec();
    b.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
    b
}

fn get(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "http".into()),
        (":path", path.into()),
        (":authority", "svc:8080".into()),
    ]
}

fn enc(encoder: &mut Encoder<'_>, stream: u32, end: bool, fields: &[(&str, String)]) -> Vec<u8> {
    let f: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers(encoder, stream, end, &f)
}

fn request(stream: u32, protocol: Protocol, method: &str, resource: &str) -> MessageEvent {
    MessageEvent::StreamRequest {
        stream,
        protocol,
        info: RequestInfo {
            method: method.to_owned().into(),
            resource: resource.into(),
            ..RequestInfo::default()
        },
    }
}

fn response(stream: u32, status: &str) -> MessageEvent {
    MessageEvent::StreamResponse {
        stream,
        info: ResponseInfo {
            status: status.to_owned().into(),
            is_error: status >= "400",
            ..ResponseInfo::default()
        },
    }
}

fn end(direction: Direction, stream: u32, bytes: u64) -> MessageEvent {
    MessageEvent::StreamEnd {
        direction,
        stream,
        bytes,
        response: None,
        protocol: None,
    }
}

fn events(steps: &[Step]) -> (Vec<MessageEvent>, u32, u32) {
    let (events, [unparsed, truncated, unknown]) = counted(steps);
    assert_eq!(unknown, 0, "no unknown header fields expected");
    (events, unparsed, truncated)
}

/// The events of `steps`, and the counts: unparsed, truncated, unknown headers.
fn counted(steps: &[Step]) -> (Vec<MessageEvent>, [u32; 3]) {
    let mut parser = Http2Parser::default();
    let outcomes = feed_all(&mut parser, steps);
    let sum = |f: fn(&FeedOutcome) -> u32| outcomes.iter().map(f).sum();
    let counts = [
        sum(|o| o.unparsed),
        sum(|o| o.truncated),
        sum(|o| o.unknown_headers),
    ];
    (
        outcomes.into_iter().flat_map(|o| o.events).collect(),
        counts,
    )
}

#[test]
fn preface_is_detected_whole_or_split() {
    assert!(looks_like_preface(PREFACE));
    assert!(looks_like_preface(&client_start()));
    assert!(looks_like_preface(&PREFACE[..10]));
    assert!(!looks_like_preface(&PREFACE[..4]));
    assert!(!looks_like_preface(b"PRI * HTTP/1.1\r\n"));
    assert!(!looks_like_preface(b"GET / HTTP/1.1\r\n\r\n"));
}

#[test]
fn one_stream_is_one_call_with_its_body_bytes() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut first = client_start();
    first.extend(enc(&mut c, 1, true, &get("/items?id=7")));
    let mut answer = frame(SETTINGS, 0, 0, &[]);
    answer.extend(headers(&mut s, 1, false, &[(":status", "200")]));
    answer.extend(data(1, false, b"hello"));
    answer.extend(data(1, true, b" world"));
    let (ev, unparsed, truncated) = events(&[req(first), resp(answer)]);
    assert_eq!(
        ev,
        vec![
            request(1, Protocol::Http2, "GET", "/items"),
            end(Direction::Request, 1, 0),
            response(1, "200"),
            end(Direction::Response, 1, 11),
        ]
    );
    assert_eq!((unparsed, truncated), (0, 0));
}

#[test]
fn interleaved_streams_pair_by_id_and_reuse_the_dynamic_table() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut first = client_start();
    first.extend(enc(&mut c, 1, true, &get("/a")));
    first.extend(enc(&mut c, 3, true, &get("/b")));
    // The second request's method, scheme and authority now come from the dynamic table.
    let mut answers = headers(&mut s, 3, false, &[(":status", "404")]);
    answers.extend(headers(&mut s, 1, false, &[(":status", "200")]));
    answers.extend(data(1, false, b"abc"));
    answers.extend(data(3, true, b"nope"));
    let again = enc(&mut c, 5, true, &get("/a"));
    let last = [
        data(1, true, b"de"),
        headers(&mut s, 5, true, &[(":status", "200")]),
    ]
    .concat();
    let (ev, unparsed, truncated) = events(&[req(first), resp(answers), req(again), resp(last)]);
    assert_eq!(
        ev,
        vec![
            request(1, Protocol::Http2, "GET", "/a"),
            end(Direction::Request, 1, 0),
            request(3, Protocol::Http2, "GET", "/b"),
            end(Direction::Request, 3, 0),
            response(3, "404"),
            response(1, "200"),
            end(Direction::Response, 3, 4),
            request(5, Protocol::Http2, "GET", "/a"),
            end(Direction::Request, 5, 0),
            end(Direction::Response, 1, 5),
            response(5, "200"),
            end(Direction::Response, 5, 0),
        ]
    );
    assert_eq!((unparsed, truncated), (0, 0));
}

fn grpc_request(encoder: &mut Encoder<'_>, stream: u32, method: &str) -> Vec<u8> {
    let fields = [
        (":method", "POST".to_owned()),
        (":scheme", "http".into()),
        (":path", method.into()),
        (":authority", "greeter:50051".into()),
        ("content-type", "application/grpc".into()),
        ("te", "trailers".into()),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        ),
        ("authorization", "Bearer secret".into()),
    ];
    let mut f = enc(encoder, stream, false, &fields);
    f.extend(data(stream, true, &[0, 0, 0, 0, 3, 10, 1, b'x']));
    f
}

#[test]
fn grpc_status_and_message_come_from_the_trailers() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut first = client_start();
    first.extend(grpc_request(&mut c, 1, "/helloworld.Greeter/SayHello"));
    let mut answer = headers(
        &mut s,
        1,
        false,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    answer.extend(data(1, false, &[0, 0, 0, 0, 2, 10, 0]));
    answer.extend(headers(
        &mut s,
        1,
        true,
        &[("grpc-status", "5"), ("grpc-message", "no%20such%20user")],
    ));
    let (ev, unparsed, truncated) = events(&[req(first), resp(answer)]);
    assert_eq!(
        ev,
        vec![
            MessageEvent::StreamRequest {
                stream: 1,
                protocol: Protocol::Grpc,
                info: RequestInfo {
                    method: "POST".into(),
                    resource: "/helloworld.Greeter/SayHello".into(),
                    trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                    dns_id: None,
                },
            },
            end(Direction::Request, 1, 8),
            response(1, "200"),
            MessageEvent::StreamEnd {
                direction: Direction::Response,
                stream: 1,
                bytes: 7,
                response: Some(ResponseInfo {
                    status: "NOT_FOUND".into(),
                    is_error: true,
                    error_message: Some("no such user".into()),
                    ..ResponseInfo::default()
                }),
                protocol: None,
            },
        ]
    );
    assert_eq!((unparsed, truncated), (0, 0));
    // No header value but those the row needs is kept anywhere in the events.
    assert!(!format!("{ev:?}").contains("secret"));
}

#[test]
fn a_trailers_only_grpc_answer_is_one_headers_frame() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut first = client_start();
    first.extend(grpc_request(&mut c, 1, "/pkg.Svc/Get"));
    let answer = headers(
        &mut s,
        1,
        true,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "0"),
        ],
    );
    let (ev, _, _) = events(&[req(first), resp(answer)]);
    let ok = ResponseInfo {
        status: "OK".into(),
        ..ResponseInfo::default()
    };
    assert_eq!(
        ev[2..],
        [
            MessageEvent::StreamResponse {
                stream: 1,
                info: ok.clone(),
            },
            MessageEvent::StreamEnd {
                direction: Direction::Response,
                stream: 1,
                bytes: 0,
                response: Some(ok),
                protocol: None,
            },
        ]
    );
}

#[test]
fn a_reset_stream_is_a_call_with_its_error_code() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut first = client_start();
    first.extend(enc(&mut c, 1, false, &get("/slow")));
    first.extend(enc(&mut c, 3, true, &get("/fast")));
    let cancel = frame(RST_STREAM, 0, 1, &8u32.to_be_bytes());
    let answer = headers(&mut s, 3, true, &[(":status", "204")]);
    let (ev, unparsed, _) = events(&[req(first), req(cancel), resp(answer)]);
    let cancelled = ResponseInfo {
        status: "CANCEL".into(),
        is_error: true,
        error_message: Some("stream reset: CANCEL".into()),
        ..ResponseInfo::default()
    };
    assert_eq!(
        ev,
        vec![
            request(1, Protocol::Http2, "GET", "/slow"),
            request(3, Protocol::Http2, "GET", "/fast"),
            end(Direction::Request, 3, 0),
            MessageEvent::StreamResponse {
                stream: 1,
                info: cancelled.clone(),
            },
            end(Direction::Request, 1, 0),
            MessageEvent::StreamEnd {
                direction: Direction::Response,
                stream: 1,
                bytes: 0,
                response: Some(cancelled),
                protocol: None,
            },
            response(3, "204"),
            end(Direction::Response, 3, 0),
        ]
    );
    assert_eq!(unparsed, 0);
}

#[test]
fn frames_split_anywhere_over_segments_read_the_same() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut up = client_start();
    up.extend(enc(&mut c, 1, true, &get("/split")));
    let mut down = headers(&mut s, 1, false, &[(":status", "200")]);
    down.extend(data(1, true, &[7; 300]));
    let whole = events(&[req(up.clone()), resp(down.clone())]);
    for cut in 1..up.len() {
        let steps = [
            req(up[..cut].to_vec()),
            req(up[cut..].to_vec()),
            resp(down.clone()),
        ];
        assert_eq!(events(&steps), whole, "request cut at {cut}");
    }
    for cut in 1..down.len() {
        let steps = [
            req(up.clone()),
            resp(down[..cut].to_vec()),
            resp(down[cut..].to_vec()),
        ];
        assert_eq!(events(&steps), whole, "response cut at {cut}");
    }
}

#[test]
fn padded_and_prioritized_headers_and_continuations_are_read() {
    let mut c = Encoder::new();
    let fields = get("/padded");
    let block = c.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    let (a, b) = block.split_at(5);
    // PADDED (3 bytes of padding) and PRIORITY (5 bytes), no END_HEADERS: a CONTINUATION ends
    // the block.
    let mut payload = vec![3];
    payload.extend_from_slice(&[0, 0, 0, 0, 16]);
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0; 3]);
    let mut up = client_start();
    up.extend(frame(
        HEADERS,
        END_STREAM | PADDED | PRIORITY_FLAG,
        1,
        &payload,
    ));
    up.extend(frame(CONTINUATION, END_HEADERS, 1, b));
    let mut s = Encoder::new();
    let mut down = headers(&mut s, 1, false, &[(":status", "200")]);
    let mut padded = vec![10];
    padded.extend_from_slice(b"body");
    padded.extend_from_slice(&[0; 10]);
    down.extend(frame(DATA, END_STREAM | PADDED, 1, &padded));
    let (ev, unparsed, truncated) = events(&[req(up), resp(down)]);
    assert_eq!(
        ev,
        vec![
            request(1, Protocol::Http2, "GET", "/padded"),
            end(Direction::Request, 1, 0),
            response(1, "200"),
            end(Direction::Response, 1, 4),
        ]
    );
    assert_eq!((unparsed, truncated), (0, 0));
}

#[test]
fn unseen_data_payload_is_counted_and_framing_goes_on() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut up = client_start();
    up.extend(enc(&mut c, 1, true, &get("/big")));
    let mut down = headers(&mut s, 1, false, &[(":status", "200")]);
    down.extend(data(1, false, &[1; 16384]));
    // The capture kept 100 bytes of the response write; the next write is seen whole.
    let captured = down[..100].to_vec();
    let len = down.len();
    let last = data(1, true, b"tail");
    let steps = [req(up), (Direction::Response, captured, len), resp(last)];
    let (ev, unparsed, truncated) = events(&steps);
    assert_eq!(ev[3], end(Direction::Response, 1, 16388));
    assert_eq!((unparsed, truncated), (0, 0));
}

#[test]
fn an_unseen_frame_header_costs_only_what_it_hid() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut up = client_start();
    up.extend(enc(&mut c, 1, true, &get("/one")));
    // Two DATA frames in one write, the second's header beyond the 100 bytes captured.
    let mut down = headers(&mut s, 1, false, &[(":status", "200")]);
    down.extend(data(1, false, &[1; 200]));
    down.extend(data(1, false, &[2; 200]));
    let len = down.len();
    let cut = (Direction::Response, down[..100].to_vec(), len);
    let more = [
        data(1, true, b"x"),
        headers(&mut s, 3, true, &[(":status", "200")]),
    ]
    .concat();
    let next = enc(&mut c, 3, true, &get("/two"));
    let (ev, unparsed, truncated) = events(&[req(up), cut, req(next), resp(more)]);
    assert_eq!(
        ev,
        vec![
            request(1, Protocol::Http2, "GET", "/one"),
            end(Direction::Request, 1, 0),
            response(1, "200"),
            request(3, Protocol::Http2, "GET", "/two"),
            end(Direction::Request, 3, 0),
            // The response direction resynced on the DATA frame; its bytes before were lost.
            end(Direction::Response, 1, 201),
            // Its dynamic table is no longer known, but `:status 200` is in the static one.
            response(3, "200"),
            end(Direction::Response, 3, 0),
        ]
    );
    assert_eq!((unparsed, truncated), (1, 0));
}

/// A long write as the agent feeds it: its first `head` bytes (the rest of the first part
/// unseen), then its last `tail` bytes as a segment of their own.
fn head_and_tail(direction: Direction, write: &[u8], head: usize, tail: usize) -> [Step; 2] {
    let split = write.len() - tail;
    [
        (direction, write[..head].to_vec(), split),
        (direction, write[split..].to_vec(), 0),
    ]
}

/// A gRPC answer of 3,000 bytes: HEADERS, DATA and trailers in one write. 1,024 bytes are
/// captured from its start and 256 from its end: the DATA frame is skipped by its length to
/// the trailers, which the tail holds, so the call ends with its status and its header tables
/// stay in step (the next answer's indexed fields are known).
fn grpc_answer(s: &mut Encoder<'_>, stream: u32, message: &[u8], status: &str) -> Vec<u8> {
    let mut w = headers(
        s,
        stream,
        false,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    let mut body = vec![0];
    body.extend((message.len() as u32).to_be_bytes());
    body.extend(message);
    w.extend(data(stream, false, &body));
    w.extend(headers(s, stream, true, &[("grpc-status", status)]));
    w
}

fn grpc_end(stream: u32, bytes: u64, status: &str) -> MessageEvent {
    MessageEvent::StreamEnd {
        direction: Direction::Response,
        stream,
        bytes,
        response: Some(ResponseInfo {
            status: status.to_owned().into(),
            is_error: status != "OK",
            ..ResponseInfo::default()
        }),
        protocol: None,
    }
}

#[test]
fn trailers_in_the_tail_of_a_long_write_end_the_call() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut up = client_start();
    up.extend(grpc_request(&mut c, 1, "/pkg.Svc/Big"));
    let long = grpc_answer(&mut s, 1, &[7; 3000], "0");
    let mut steps = vec![req(up)];
    steps.extend(head_and_tail(Direction::Response, &long, 1024, 256));
    steps.push(req(grpc_request(&mut c, 3, "/pkg.Svc/Big")));
    steps.push(resp(grpc_answer(&mut s, 3, b"ok", "5")));
    let (ev, unparsed, truncated) = events(&steps);
    let grpc_call = |stream| MessageEvent::StreamRequest {
        stream,
        protocol: Protocol::Grpc,
        info: RequestInfo {
            method: "POST".into(),
            resource: "/pkg.Svc/Big".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            dns_id: None,
        },
    };
    assert_eq!(
        ev,
        vec![
            grpc_call(1),
            end(Direction::Request, 1, 8),
            response(1, "200"),
            grpc_end(1, 3005, "OK"),
            grpc_call(3),
            end(Direction::Request, 3, 8),
            response(3, "200"),
            grpc_end(3, 7, "NOT_FOUND"),
        ]
    );
    assert_eq!((unparsed, truncated), (0, 0));
}

/// A frame header in a long write's unseen middle loses the framing; the tail, captured to
/// its end, is searched for the chain of frames that ends it, and the trailers there still
/// end the call (the DATA frame hidden with the header is not counted).
#[test]
fn framing_lost_in_the_middle_of_a_write_is_found_again_in_its_tail() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut up = client_start();
    up.extend(grpc_request(&mut c, 1, "/pkg.Svc/Big"));
    let mut long = headers(
        &mut s,
        1,
        false,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    long.extend(data(1, false, &[1; 16384]));
    long.extend(data(1, false, &[2; 2000]));
    // A literal field the static table names: readable with the dynamic table lost.
    long.extend(headers(&mut s, 1, true, &[("grpc-status", "0")]));
    let mut steps = vec![req(up)];
    steps.extend(head_and_tail(Direction::Response, &long, 1024, 256));
    let (ev, unparsed, truncated) = events(&steps);
    assert_eq!(ev[3], grpc_end(1, 16384, "OK"));
    assert_eq!((ev.len(), unparsed, truncated), (4, 1, 0));
}

/// A read that begins inside a frame, captured whole, resyncs at the chain of frames that ends
/// it; one captured only in part is not searched (its captured end is no frame's end), and is
/// counted.
#[test]
fn a_whole_segment_resyncs_at_the_frames_that_end_it() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let mut up = client_start();
    up.extend(enc(&mut c, 1, true, &get("/a")));
    up.extend(enc(&mut c, 3, true, &get("/b")));
    let first = headers(&mut s, 1, false, &[(":status", "200")]);
    let mut lost = data(1, false, &[5; 300]);
    lost.extend(data(1, true, b"end"));
    let second = [
        headers(&mut s, 3, false, &[(":status", "404")]),
        data(3, true, b"no"),
    ]
    .concat();
    // The DATA frame's header cut in a segment; the next read starts inside it.
    let cut = (Direction::Response, lost[..5].to_vec(), 200);
    let rest = lost[200..].to_vec();
    let whole = [
        req(up.clone()),
        resp(first.clone()),
        cut.clone(),
        resp(rest.clone()),
    ];
    let (ev, counts) = counted(&whole);
    assert_eq!(
        ev[4..],
        [response(1, "200"), end(Direction::Response, 1, 3)]
    );
    assert_eq!(counts, [1, 0, 0]);

    let in_part = (Direction::Response, rest.clone(), rest.len() + 10);
    let (ev, counts) = counted(&[req(up), resp(first), cut, in_part, resp(second)]);
    assert_eq!(
        ev[4..],
        [
            response(1, "200"),
            response(3, "404"),
            end(Direction::Response, 3, 2)
        ]
    );
    assert_eq!(counts, [2, 0, 0]);
}

#[test]
fn a_block_indexing_entries_never_seen_is_a_call_with_what_could_be_read() {
    // As when the agent joins late: the client's encoder indexes its dynamic table (index 62
    // and beyond), which this decoder never saw.
    let mut up = client_start();
    up.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &[0x82, 0xbe, 0xbf],
    ));
    let mut s = Encoder::new();
    let down = headers(&mut s, 1, true, &[(":status", "200")]);
    let mut c = Encoder::new();
    let later = enc(&mut c, 3, true, &get("/later"));
    let (ev, counts) = counted(&[req(up), resp(down), req(later)]);
    assert_eq!(
        ev,
        vec![
            // `:method GET` is in the static table; the path was in the entries never seen.
            request(1, Protocol::Http2, "GET", ""),
            end(Direction::Request, 1, 0),
            response(1, "200"),
            end(Direction::Response, 1, 0),
            // A later block that says everything in literals and entries it added is whole.
            request(3, Protocol::Http2, "GET", "/later"),
            end(Direction::Request, 3, 0),
        ]
    );
    // Unknown entries, not a cut block: unparsed, truncated, unknown headers.
    assert_eq!(counts, [0, 0, 1]);
}

#[test]
fn a_header_block_beyond_its_bound_is_taken_as_cut() {
    let mut c = Encoder::new();
    let big = "v".repeat(MAX_BLOCK);
    let mut up = client_start();
    up.extend(headers(
        &mut c,
        1,
        true,
        &[(":method", "GET"), ("x-big", &big)],
    ));
    let (ev, unparsed, truncated) = events(&[req(up)]);
    assert_eq!(ev[0], request(1, Protocol::Http2, "", ""));
    assert_eq!((unparsed, truncated), (0, 1));
}

#[test]
fn responses_to_streams_never_opened_are_counted() {
    let mut s = Encoder::new();
    let mut c = Encoder::new();
    let mut up = client_start();
    up.extend(enc(&mut c, 1, true, &get("/a")));
    let down = [
        headers(&mut s, 7, true, &[(":status", "200")]),
        headers(&mut s, 1, true, &[(":status", "200")]),
    ]
    .concat();
    let (ev, unparsed, _) = events(&[req(up), resp(down)]);
    assert_eq!(ev.len(), 4);
    assert_eq!(unparsed, 1);
}

#[test]
fn arbitrary_bytes_never_panic_and_stay_bounded() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut parser = Http2Parser::default();
        for _ in 0..8 {
            let n = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let direction = if next() % 2 == 0 {
                Direction::Request
            } else {
                Direction::Response
            };
            let len = n + (next() % 3 == 0) as usize * (next() % 70_000) as usize;
            parser.feed(&Segment {
                direction,
                data: &bytes,
                len,
            });
        }
        assert!(parser.streams.len() <= MAX_STREAMS);
    }
}

/// The agent joined a connection after its preface: the first request bytes are frames, the
/// header tables are unknown. Streams are calls with what the static table and literals say,
/// and once a request's entries are its own, exact.
#[test]
fn a_connection_joined_after_its_preface_is_detected_and_read_in_part() {
    // An encoder that indexes every field it can (httlib-hpack, as nghttp2 and gRPC do).
    let mut c = httlib_hpack::Encoder::default();
    let mut indexed_get = |stream: u32| {
        let mut block = Vec::new();
        for (name, value) in get("/missed") {
            let flags = httlib_hpack::Encoder::WITH_INDEXING | httlib_hpack::Encoder::BEST_FORMAT;
            c.encode(
                (name.as_bytes().to_vec(), value.into_bytes(), flags),
                &mut block,
            )
            .unwrap();
        }
        frame(HEADERS, END_HEADERS | END_STREAM, stream, &block)
    };
    let mut s = Encoder::new();
    // Blocks the agent missed: the client's table now holds the request's fields.
    let _ = indexed_get(1);
    let _ = headers(&mut s, 1, true, &[(":status", "200"), ("server", "x")]);
    // The same request again: its path from the client's dynamic table.
    let first = indexed_get(3);
    assert!(crate::http2::looks_like_frames(&first));
    assert_eq!(
        crate::detect(crate::Transport::Tcp, &first, None),
        Some(Protocol::Http2)
    );
    let answer = headers(&mut s, 3, true, &[(":status", "200"), ("server", "x")]);
    let (ev, counts) = counted(&[req(first), resp(answer)]);
    assert_eq!(
        ev,
        vec![
            // `:method GET` is the static table's, the path an entry never seen.
            request(3, Protocol::Http2, "GET", ""),
            end(Direction::Request, 3, 0),
            // `:status 200` is the static table's.
            response(3, "200"),
            end(Direction::Response, 3, 0),
        ]
    );
    // Unknown entries, not a cut block: unparsed, truncated, unknown headers.
    assert_eq!(counts, [0, 0, 1]);
}

#[test]
fn other_protocols_are_not_taken_for_frames() {
    for data in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\x21\x00\x00\x00\x03SELECT 1 FROM dual WHERE 1 = 1",
        b"",
    ] {
        assert!(!looks_like_frames(data), "{data:?}");
    }
}

/// HTTP/1.1 `Upgrade: h2c` request and its `101` with what the server sends next in the same
/// write (SETTINGS, then the response on stream 1).
fn upgrade_exchange(s: &mut Encoder<'_>) -> (Vec<u8>, Vec<u8>) {
    let request =
        b"GET /upgraded?x=1 HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\n\
Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
            .to_vec();
    let mut answer =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    answer.extend(frame(SETTINGS, 0, 0, &[]));
    answer.extend(headers(s, 1, false, &[(":status", "200")]));
    answer.extend(data(1, true, b"upgraded"));
    (request, answer)
}

#[test]
fn an_http1_upgrade_to_h2c_goes_on_as_stream_1_then_more_streams() {
    let (mut c, mut s) = (Encoder::new(), Encoder::new());
    let (upgrade, answer) = upgrade_exchange(&mut s);
    let mut next = client_start();
    next.extend(enc(&mut c, 3, true, &get("/next")));
    let mut reply = headers(&mut s, 3, false, &[(":status", "404")]);
    reply.extend(data(3, true, b"no"));
    // The 101 alone in one read and the frames after it in another must read the same.
    let cut = answer.iter().position(|&b| b == 0).unwrap();
    let whole = [
        req(upgrade.clone()),
        resp(answer.clone()),
        req(next.clone()),
        resp(reply.clone()),
    ];
    let split = [
        req(upgrade),
        resp(answer[..cut].to_vec()),
        resp(answer[cut..].to_vec()),
        req(next),
        resp(reply),
    ];
    for steps in [&whole[..], &split[..]] {
        let mut parser = crate::http::HttpParser::default();
        let outcomes = feed_all(&mut parser, steps);
        let ev: Vec<_> = outcomes.iter().flat_map(|o| o.events.clone()).collect();
        assert_eq!(
            ev,
            vec![
                MessageEvent::RequestStart(RequestInfo {
                    method: "GET".into(),
                    resource: "/upgraded".into(),
                    ..RequestInfo::default()
                }),
                MessageEvent::End {
                    direction: Direction::Request
                },
                MessageEvent::StreamUpgrade {
                    stream: 1,
                    protocol: Protocol::Http2
                },
                response(1, "200"),
                end(Direction::Response, 1, 8),
                request(3, Protocol::Http2, "GET", "/next"),
                end(Direction::Request, 3, 0),
                response(3, "404"),
                end(Direction::Response, 3, 2),
            ]
        );
        assert!(outcomes.iter().all(|o| o.unparsed == 0 && o.truncated == 0));
    }
}

#[test]
fn a_101_to_another_protocol_stays_a_tunnel() {
    let request =
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
    // A WebSocket frame that happens to look like an HTTP/2 frame header is not read as one.
    answer.extend(frame(HEADERS, END_HEADERS, 1, b"\x88"));
    let mut parser = crate::http::HttpParser::default();
    let outcomes = feed_all(&mut parser, &[req(request.to_vec()), resp(answer)]);
    let ev: Vec<_> = outcomes.iter().flat_map(|o| o.events.clone()).collect();
    assert!(
        ev.iter().all(|e| !matches!(
            e,
            MessageEvent::StreamUpgrade { .. } | MessageEvent::StreamResponse { .. }
        )),
        "{ev:?}"
    );
    assert_eq!(
        ev.len(),
        4,
        "request start and end, 101 start and end: {ev:?}"
    );
}
