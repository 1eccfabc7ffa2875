use httlib_hpack::Encoder;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(block: &Block) -> Vec<(Field, String)> {
    block
        .fields
        .iter()
        .map(|(f, v)| (*f, String::from_utf8_lossy(v).into_owned()))
        .collect()
}

#[test]
fn the_static_table_names_the_needed_fields_where_it_has_them() {
    for (i, (name, _)) in STATIC_TABLE.iter().enumerate() {
        assert_eq!(static_field(i + 1), Field::of(name.as_bytes()), "{name}");
    }
}

/// RFC 7541 Appendix C.4: three requests on one connection, Huffman-coded, the second and
/// third indexing the dynamic table the first filled.
#[test]
fn rfc_7541_c4_requests_with_huffman() {
    let mut h = Hpack::default();
    let first = h
        .decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
        .unwrap();
    assert_eq!(
        fields(&first),
        [(Field::Method, "GET".into()), (Field::Path, "/".into())]
    );
    // :authority www.example.com (57 bytes) is the table's one entry.
    assert_eq!((h.entries.len(), h.size), (1, 57));
    let second = h.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
    assert_eq!(
        fields(&second),
        [(Field::Method, "GET".into()), (Field::Path, "/".into())]
    );
    assert_eq!((h.entries.len(), h.size), (2, 110));
    let third = h
        .decode(&hex(
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ))
        .unwrap();
    assert_eq!(
        fields(&third),
        [
            (Field::Method, "GET".into()),
            (Field::Path, "/index.html".into())
        ]
    );
    assert_eq!((h.entries.len(), h.size, third.unknown), (3, 164, 0));
}

/// A deterministic generator of header lists: the fields rows need among others, names from
/// the static table and custom ones, values repeating often enough to be indexed.
struct Headers(u64);

impl Headers {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn list(&mut self) -> Vec<(String, String)> {
        let names = [
            ":method",
            ":path",
            ":status",
            "content-type",
            "traceparent",
            "grpc-status",
            "grpc-message",
            "user-agent",
            "authorization",
            "x-request-id",
            "accept-encoding",
            "x-custom-header-with-a-long-name",
        ];
        let n = 1 + self.next() % 7;
        (0..n)
            .map(|_| {
                let name = names[(self.next() % names.len() as u64) as usize];
                let pad = [0, 12, 40][(self.next() % 3) as usize];
                let value = format!("v{}-{}", self.next() % 4, "x".repeat(pad));
                (name.to_owned(), value)
            })
            .collect()
    }
}

/// A header block and the needed fields it encodes, in order.
type Encoded = (Vec<u8>, Vec<(Field, String)>);

/// Blocks from an independent encoder (httlib-hpack: Huffman, incremental indexing, the best
/// representation it finds), with its table at `table` bytes; each block with the needed
/// fields it encodes, in order.
fn encoded(seed: u64, blocks: usize, table: u32) -> Vec<Encoded> {
    let mut headers = Headers(seed);
    let mut encoder = Encoder::with_dynamic_size(table);
    (0..blocks)
        .map(|_| {
            let list = headers.list();
            let mut block = Vec::new();
            for (name, value) in &list {
                let flags = Encoder::HUFFMAN_NAME
                    | Encoder::HUFFMAN_VALUE
                    | Encoder::WITH_INDEXING
                    | Encoder::BEST_FORMAT;
                let field = (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags);
                encoder.encode(field, &mut block).unwrap();
            }
            let needed = list
                .iter()
                .filter_map(|(n, v)| Field::of(n.as_bytes()).map(|f| (f, v.clone())))
                .collect();
            (block, needed)
        })
        .collect()
}

#[test]
fn blocks_of_another_encoder_decode_exactly_through_evictions() {
    for (seed, table) in [(1, 4096), (2, 256), (3, 128), (4, 1024)] {
        let mut h = Hpack::default();
        if table != 4096 {
            h.resize(table as usize);
        }
        for (i, (block, want)) in encoded(seed, 400, table).iter().enumerate() {
            let got = h.decode(block).unwrap();
            assert_eq!(
                (fields(&got), got.unknown),
                (want.clone(), 0),
                "seed {seed} block {i}"
            );
        }
        assert!(h.is_whole());
    }
}

/// After blocks were missed (or from a connection's middle), every field the decoder reports
/// is the one encoded, the others are counted unknown, and once the encoder's table has turned
/// over the decoder knows it is exact again.
#[test]
fn after_missed_blocks_fields_are_exact_or_unknown_until_the_table_is_whole_again() {
    for (seed, table, joined_late) in [(5, 512, false), (6, 4096, false), (7, 1024, true)] {
        let mut h = if joined_late {
            Hpack::joined_late()
        } else {
            Hpack::default()
        };
        if table != 4096 {
            h.resize(table as usize);
        }
        let blocks = encoded(seed, 600, table);
        let (mut unknown, mut whole_at) = (0, None);
        for (i, (block, want)) in blocks.iter().enumerate() {
            if !joined_late && i == 100 {
                // A block missed, as when the capture cut it.
                h.lose();
                continue;
            }
            if !joined_late && i < 100 || joined_late && i < 50 {
                if !joined_late {
                    h.decode(block).unwrap();
                }
                continue;
            }
            let got = h.decode(block).unwrap();
            let got_fields = fields(&got);
            // What is reported is what was encoded, in order, with the unknown ones left out.
            let mut rest = want.iter();
            for f in &got_fields {
                assert!(
                    rest.any(|w| w == f),
                    "seed {seed} block {i}: {f:?} not in {want:?}"
                );
            }
            if got.unknown == 0 {
                assert_eq!(&got_fields, want, "seed {seed} block {i}");
            }
            unknown += got.unknown;
            if h.is_whole() && whole_at.is_none() {
                whole_at = Some(i);
            }
            if whole_at.is_some() {
                assert_eq!(
                    got.unknown, 0,
                    "seed {seed} block {i} after whole at {whole_at:?}"
                );
            }
        }
        assert!(unknown > 0, "seed {seed}: nothing was unknown");
        // A small table turns over within these blocks; 4 KiB of the few distinct fields this
        // generator makes never fills, so that table stays partly unknown (rightly).
        assert_eq!(
            whole_at.is_some(),
            table <= 1024,
            "seed {seed}: whole at {whole_at:?}"
        );
    }
}

#[test]
fn an_index_past_a_whole_table_reads_the_block_for_what_it_can() {
    let mut h = Hpack::default();
    // :method GET (static), index 62 (never added), :path with a literal value.
    let got = h.decode(&[0x82, 0xbe, 0x04, 0x02, b'/', b'x']).unwrap();
    assert_eq!(
        (fields(&got), got.unknown),
        (
            vec![(Field::Method, "GET".into()), (Field::Path, "/x".into())],
            1
        )
    );
    assert!(!h.is_whole());
    // A size update to 0 empties the encoder's table: whole again.
    h.decode(&[0x20, 0x3f, 0xe1, 0x1f]).unwrap();
    assert!(h.is_whole());
}

#[test]
fn size_updates_beyond_the_bound_are_followed_in_part() {
    let mut h = Hpack::default();
    // 001 11111 then 1 MiB - 31 in 7-bit groups.
    let mut block = vec![0x3f];
    let mut rest = (1usize << 20) - 31;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    // :path /a, added to the table.
    block.extend_from_slice(&[0x44, 0x02, b'/', b'a']);
    let got = h.decode(&block).unwrap();
    assert_eq!(fields(&got), [(Field::Path, "/a".into())]);
    assert_eq!(h.max_size, MAX_TABLE_SIZE);
    assert!(!h.is_whole());
    // The entry it added resolves; one past it is unknown, not an error.
    let got = h.decode(&[0xbe, 0xbf]).unwrap();
    assert_eq!(
        (fields(&got), got.unknown),
        (vec![(Field::Path, "/a".into())], 1)
    );
}

#[test]
fn truncated_and_arbitrary_blocks_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut h = Hpack::default();
    for _ in 0..20_000 {
        let n = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        let _ = h.decode(&bytes);
        assert!(h.size <= h.max_size && h.max_size <= MAX_TABLE_SIZE);
    }
    for (block, _) in encoded(9, 50, 4096) {
        for cut in 0..block.len() {
            let _ = Hpack::default().decode(&block[..cut]);
        }
    }
}
