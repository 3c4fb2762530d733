//! Replies come out of Puerta exactly as the cluster node sent them: every command below is sent to
//! Puerta and to the master that owns its key's slot, in RESP2 and in RESP3, and the two replies must
//! be the same bytes. A proxy that decodes and re-encodes replies can drift from Redis in ways a
//! client library hides (a double printed differently, a verbatim string turned into a bulk, a RESP2
//! null array turned into a null bulk), so nothing here goes through a parser that would normalise.

use std::collections::hash_map::{Entry, HashMap};

use bytes::Bytes;
use puerta::redis::resp::Frame;
use puerta_tests::redis_cluster::ProxiedCluster;
use puerta_tests::resp_client::RespClient;

/// Size of the large bulk value: big enough to arrive in many reads on both sides.
const BIG_VALUE: usize = 1 << 20;
/// Elements of the large list read back with one LRANGE.
const LONG_LIST: usize = 10_000;

/// What a case covers, the key that decides which node must answer it (`None`: keyless, any master),
/// the command, and how the node's reply starts in RESP2 and in RESP3: the prefixes keep the list
/// honest, so a case that stopped producing the type it is named after (an error instead of a map,
/// say) fails instead of comparing two equal but uninteresting replies.
type Case = (
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    &'static str,
    &'static str,
);

const CASES: &[Case] = &[
    (
        "simple string +OK",
        Some("pt:simple"),
        &["SET", "pt:simple", "v"],
        "+OK\r\n",
        "+OK\r\n",
    ),
    (
        "simple string from a script",
        Some("pt:str"),
        &["EVAL", "return redis.status_reply('FINE')", "1", "pt:str"],
        "+FINE",
        "+FINE",
    ),
    (
        "error: not an integer",
        Some("pt:str"),
        &["INCR", "pt:str"],
        "-ERR value is not an integer",
        "-ERR value is not an integer",
    ),
    (
        "error: WRONGTYPE",
        Some("pt:list"),
        &["GET", "pt:list"],
        "-WRONGTYPE",
        "-WRONGTYPE",
    ),
    (
        "error: a script's own code",
        Some("pt:str"),
        &[
            "EVAL",
            "return redis.error_reply('MYERR custom text')",
            "1",
            "pt:str",
        ],
        "-MYERR custom text",
        "-MYERR custom text",
    ),
    (
        "integer",
        Some("pt:str"),
        &["STRLEN", "pt:str"],
        ":5\r\n",
        ":5\r\n",
    ),
    (
        "negative integer",
        Some("pt:str"),
        &["TTL", "pt:str"],
        ":-1\r\n",
        ":-1\r\n",
    ),
    (
        "integer from INCRBY 0",
        Some("pt:neg"),
        &["INCRBY", "pt:neg", "0"],
        ":-7\r\n",
        ":-7\r\n",
    ),
    (
        "bulk",
        Some("pt:str"),
        &["GET", "pt:str"],
        "$5\r\nhello",
        "$5\r\nhello",
    ),
    (
        "null bulk (RESP3 null)",
        Some("pt:missing"),
        &["GET", "pt:missing"],
        "$-1\r\n",
        "_\r\n",
    ),
    (
        "null bulk from ZSCORE (RESP3 null)",
        Some("pt:zset"),
        &["ZSCORE", "pt:zset", "nobody"],
        "$-1\r\n",
        "_\r\n",
    ),
    (
        "empty array",
        Some("pt:missing"),
        &["LRANGE", "pt:missing", "0", "-1"],
        "*0\r\n",
        "*0\r\n",
    ),
    (
        "empty array (RESP3 empty set)",
        Some("pt:missing"),
        &["SMEMBERS", "pt:missing"],
        "*0\r\n",
        "~0\r\n",
    ),
    (
        "array of bulks",
        Some("pt:list"),
        &["LRANGE", "pt:list", "0", "-1"],
        "*3\r\n",
        "*3\r\n",
    ),
    (
        "nested array: XRANGE",
        Some("pt:stream"),
        &["XRANGE", "pt:stream", "-", "+"],
        "*2\r\n*2\r\n",
        "*2\r\n*2\r\n",
    ),
    (
        "nested array with an empty one: script tables",
        Some("pt:str"),
        &[
            "EVAL",
            "return {1, {2, {'x', 'y'}}, {}, 'z'}",
            "1",
            "pt:str",
        ],
        "*4\r\n:1\r\n*2\r\n",
        "*4\r\n:1\r\n*2\r\n",
    ),
    (
        "null array (RESP3 null): XREAD with nothing new",
        Some("pt:stream"),
        &["XREAD", "COUNT", "1", "STREAMS", "pt:stream", "99-0"],
        "*-1\r\n",
        "_\r\n",
    ),
    (
        "null array (RESP3 null): BLPOP timing out",
        Some("pt:nolist"),
        &["BLPOP", "pt:nolist", "0.01"],
        "*-1\r\n",
        "_\r\n",
    ),
    (
        "flat array (RESP3 map): HGETALL",
        Some("pt:hash"),
        &["HGETALL", "pt:hash"],
        "*6\r\n",
        "%3\r\n",
    ),
    (
        "nested maps and arrays: XINFO STREAM",
        Some("pt:stream"),
        &["XINFO", "STREAM", "pt:stream"],
        "*",
        "%",
    ),
    (
        "array (RESP3 set): SMEMBERS",
        Some("pt:set"),
        &["SMEMBERS", "pt:set"],
        "*3\r\n",
        "~3\r\n",
    ),
    (
        "bulk (RESP3 double): ZSCORE",
        Some("pt:zset"),
        &["ZSCORE", "pt:zset", "a"],
        "$3\r\n1.5\r\n",
        ",1.5\r\n",
    ),
    (
        "bulk (RESP3 double): ZSCORE inf",
        Some("pt:zset"),
        &["ZSCORE", "pt:zset", "c"],
        "$3\r\ninf\r\n",
        ",inf\r\n",
    ),
    (
        "bulk (RESP3 double): ZINCRBY 0",
        Some("pt:zset"),
        &["ZINCRBY", "pt:zset", "0", "b"],
        "$1\r\n2\r\n",
        ",2\r\n",
    ),
    (
        "flat array (RESP3 array of [bulk, double]): ZRANGE WITHSCORES",
        Some("pt:zset"),
        &["ZRANGE", "pt:zset", "0", "-1", "WITHSCORES"],
        "*6\r\n",
        "*3\r\n*2\r\n",
    ),
    (
        "integer 1 (RESP3 boolean true)",
        Some("pt:str"),
        &["EVAL", "redis.setresp(3); return true", "1", "pt:str"],
        ":1\r\n",
        "#t\r\n",
    ),
    (
        "integer 0 (RESP3 boolean false)",
        Some("pt:str"),
        &["EVAL", "redis.setresp(3); return false", "1", "pt:str"],
        ":0\r\n",
        "#f\r\n",
    ),
    (
        "null bulk (RESP3 null) from a script",
        Some("pt:str"),
        &["EVAL", "redis.setresp(3); return nil", "1", "pt:str"],
        "$-1\r\n",
        "_\r\n",
    ),
    (
        "bulk (RESP3 double) from a script",
        Some("pt:str"),
        &[
            "EVAL",
            "redis.setresp(3); return {double = 3.25}",
            "1",
            "pt:str",
        ],
        "$4\r\n3.25\r\n",
        ",3.25\r\n",
    ),
    (
        "bulk (RESP3 big number)",
        Some("pt:str"),
        &[
            "EVAL",
            "redis.setresp(3); return {big_number = '-1234567890123456789012345678901234567890'}",
            "1",
            "pt:str",
        ],
        "$41\r\n-1234",
        "(-1234",
    ),
    (
        "bulk (RESP3 verbatim string) from a script",
        Some("pt:str"),
        &[
            "EVAL",
            "redis.setresp(3); return {verbatim_string = {format = 'mkd', string = '# hi\\r\\n'}}",
            "1",
            "pt:str",
        ],
        "$6\r\n# hi",
        "=10\r\nmkd:# hi",
    ),
    (
        "flat array (RESP3 map) from a script",
        Some("pt:str"),
        &[
            "EVAL",
            "redis.setresp(3); return {map = {k = {1, 2}}}",
            "1",
            "pt:str",
        ],
        "*2\r\n$1\r\nk\r\n",
        "%1\r\n$1\r\nk\r\n",
    ),
    (
        "array (RESP3 set) from a script",
        Some("pt:str"),
        &[
            "EVAL",
            "redis.setresp(3); return {set = {only = true}}",
            "1",
            "pt:str",
        ],
        "*1\r\n$4\r\nonly",
        "~1\r\n$4\r\nonly",
    ),
    (
        "bulk (RESP3 verbatim string): keyless LOLWUT",
        None,
        &["LOLWUT", "VERSION", "1"],
        "$18\r\nRedis ver. 7.",
        "=22\r\ntxt:Redis ver. 7.",
    ),
    (
        "large bulk (1 MiB, binary)",
        Some("pt:big"),
        &["GET", "pt:big"],
        "$1048576\r\n",
        "$1048576\r\n",
    ),
    (
        "large array (10 000 elements)",
        Some("pt:long"),
        &["LRANGE", "pt:long", "0", "-1"],
        "*10000\r\n",
        "*10000\r\n",
    ),
];

#[test]
fn resp2_replies_pass_through_byte_for_byte() -> anyhow::Result<()> {
    passthrough(false)
}

#[test]
fn resp3_replies_pass_through_byte_for_byte() -> anyhow::Result<()> {
    passthrough(true)
}

fn passthrough(resp3: bool) -> anyhow::Result<()> {
    let env = ProxiedCluster::start("")?;
    load_data(&env)?;
    let owners = SlotOwners::read(&env)?;
    let mut proxy = connect(env.port(), resp3)?;
    let mut direct: HashMap<u16, RespClient> = HashMap::new();
    let mut mismatches = Vec::new();
    for (what, key, command, in_resp2, in_resp3) in CASES {
        let node = match key {
            Some(key) => owners.of(key)?,
            None => owners.any(),
        };
        let owner = match direct.entry(node) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(connect(node, resp3)?),
        };
        let ours = proxy.call_raw(command)?;
        let theirs = owner.call_raw(command)?;
        let prefix = if resp3 { in_resp3 } else { in_resp2 };
        anyhow::ensure!(
            theirs.starts_with(prefix.as_bytes()),
            "{what} {command:?}: the node's reply does not start with {prefix:?}: {:?}",
            String::from_utf8_lossy(&theirs[..theirs.len().min(200)])
        );
        if let Some(diff) = difference(&ours, &theirs) {
            mismatches.push(format!("{what} {command:?}: {diff}"));
        }
    }
    // Every case is run before failing, so one run lists all the replies that differ.
    assert!(
        mismatches.is_empty(),
        "{} of {} replies differ ({}):\n{}",
        mismatches.len(),
        CASES.len(),
        if resp3 { "RESP3" } else { "RESP2" },
        mismatches.join("\n")
    );
    Ok(())
}

fn connect(port: u16, resp3: bool) -> anyhow::Result<RespClient> {
    let mut client = RespClient::connect(port)?;
    if resp3 {
        let hello = client.call_raw(&["HELLO", "3"])?;
        anyhow::ensure!(hello.starts_with(b"%"), "HELLO 3 on {port}: {hello:?}");
    }
    Ok(client)
}

/// Writes the data set through Puerta only, so both sides then read the very same values.
fn load_data(env: &ProxiedCluster) -> anyhow::Result<()> {
    let mut big = Vec::with_capacity(BIG_VALUE + 300);
    // RESP framing inside the value, and every byte value, so a proxy that scans a bulk's content
    // instead of skipping its declared length would be caught.
    while big.len() < BIG_VALUE {
        big.extend_from_slice(b"\r\n*-1\r\n$-1\r\n_\r\n");
        big.extend(0..=255u8);
    }
    big.truncate(BIG_VALUE);
    let words = |line: &str| -> Vec<Bytes> {
        line.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    };
    let mut commands = vec![
        words("SET pt:str hello"),
        words("SET pt:neg -7"),
        words("RPUSH pt:list a b c"),
        words("HSET pt:hash f1 v1 f2 v2 f3 v3"),
        words("SADD pt:set m1 m2 m3"),
        words("ZADD pt:zset 1.5 a 2 b inf c"),
        words("XADD pt:stream 1-1 f v"),
        words("XADD pt:stream 2-1 f1 v1 f2 v2"),
        vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"pt:big"),
            Bytes::from(big),
        ],
    ];
    for chunk in (0..LONG_LIST).collect::<Vec<_>>().chunks(1000) {
        let mut rpush = words("RPUSH pt:long");
        rpush.extend(chunk.iter().map(|i| Bytes::from(format!("element-{i}"))));
        commands.push(rpush);
    }
    let mut client = RespClient::connect(env.port())?;
    for (command, reply) in commands.iter().zip(client.pipeline(&commands)?) {
        anyhow::ensure!(
            !matches!(reply, Frame::Error(_)),
            "setting up {:?}: {reply:?}",
            String::from_utf8_lossy(&command[0])
        );
    }
    Ok(())
}

/// Which master serves which slot, as the nodes themselves say (not Puerta's own slot code, which
/// is part of what is tested).
struct SlotOwners {
    seed: u16,
    ranges: Vec<(i64, i64, u16)>,
}

impl SlotOwners {
    fn read(env: &ProxiedCluster) -> anyhow::Result<SlotOwners> {
        let seed = env.cluster.ports()[0];
        let Frame::Array(entries) = RespClient::connect(seed)?.call("CLUSTER SLOTS")? else {
            anyhow::bail!("CLUSTER SLOTS is not an array");
        };
        let mut ranges = Vec::new();
        for entry in entries {
            match &entry {
                Frame::Array(parts) => match &parts[..] {
                    [Frame::Integer(start), Frame::Integer(end), Frame::Array(master), ..] => {
                        match master.get(1) {
                            Some(Frame::Integer(port)) => {
                                ranges.push((*start, *end, u16::try_from(*port)?))
                            }
                            _ => anyhow::bail!("no master port in {entry:?}"),
                        }
                    }
                    _ => anyhow::bail!("unexpected CLUSTER SLOTS entry {entry:?}"),
                },
                _ => anyhow::bail!("unexpected CLUSTER SLOTS entry {entry:?}"),
            }
        }
        Ok(SlotOwners { seed, ranges })
    }

    fn of(&self, key: &str) -> anyhow::Result<u16> {
        let slot = match RespClient::connect(self.seed)?.call(&format!("CLUSTER KEYSLOT {key}"))? {
            Frame::Integer(slot) => slot,
            other => anyhow::bail!("CLUSTER KEYSLOT {key}: {other:?}"),
        };
        self.ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|r| r.2)
            .ok_or_else(|| anyhow::anyhow!("no master serves slot {slot}"))
    }

    /// For keyless commands: every master runs the same redis-server, so any one will do.
    fn any(&self) -> u16 {
        self.ranges[0].2
    }
}

/// `None` when equal; otherwise the lengths, the first differing offset and the bytes around it (a
/// 1 MiB reply must not be dumped whole into the failure message).
fn difference(ours: &[u8], theirs: &[u8]) -> Option<String> {
    if ours == theirs {
        return None;
    }
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    let window = |bytes: &[u8]| {
        let from = at.saturating_sub(16);
        let to = (at + 48).min(bytes.len());
        format!("{:?}", bytes[from..to].escape_ascii().to_string())
    };
    Some(format!(
        "proxy sent {} bytes, node {}; first difference at byte {at}: proxy …{}… node …{}…",
        ours.len(),
        theirs.len(),
        window(ours),
        window(theirs)
    ))
}
