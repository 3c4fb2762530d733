//! The command table agrees with a real Redis 7.0 server: every arity matches `COMMAND INFO`, and for
//! sample calls of every key layout, `key_indices` names the same keys as `COMMAND GETKEYS`.

use bytes::Bytes;
use puerta::redis::command::spec::{key_indices, lookup, unknown_command, CommandSpec, Kind};
use puerta::redis::resp::Frame;
use puerta_tests::resp_client::{start_redis_server, RespClient};

/// Calls with distinct key names, covering Single, Range (incl. step 2 and last = -2), NumKeys (all
/// three shapes), Streams and key-behind-subcommand. (Shard channels of SSUBSCRIBE/SPUBLISH are routed
/// like keys by us but are not keys to GETKEYS, so they are not sampled here.)
const SAMPLES: &[&str] = &[
    "GET k1",
    "SET k1 v EX 10",
    "GETEX k1 PERSIST",
    "HSET k1 f v f2 v2",
    "LPUSH k1 a b c",
    "ZADD k1 1 m",
    "ZRANGE k1 0 -1 WITHSCORES",
    "XADD k1 * f v",
    "GEOADD k1 1 2 m",
    "PFADD k1 a",
    "SETBIT k1 7 1",
    "BITFIELD k1 GET u8 0",
    "MGET k1 k2 k3",
    "MSET k1 v1 k2 v2 k3 v3",
    "MSETNX k1 v1 k2 v2",
    "DEL k1 k2",
    "UNLINK k1 k2",
    "EXISTS k1 k2 k3",
    "TOUCH k1",
    "RENAME k1 k2",
    "COPY k1 k2 REPLACE",
    "SMOVE k1 k2 m",
    "LMOVE k1 k2 LEFT RIGHT",
    "BLMOVE k1 k2 LEFT RIGHT 0",
    "BRPOPLPUSH k1 k2 0",
    "BLPOP k1 k2 0",
    "BZPOPMIN k1 k2 k3 1.5",
    "SINTERSTORE k1 k2 k3",
    "SDIFF k1 k2",
    "PFMERGE k1 k2 k3",
    "PFCOUNT k1 k2",
    "BITOP AND k1 k2 k3",
    "LCS k1 k2",
    "ZRANGESTORE k1 k2 0 -1",
    "GEOSEARCHSTORE k1 k2 FROMLONLAT 0 0 BYRADIUS 1 km",
    "EVAL return 2 k1 k2 arg",
    "EVALSHA abc 1 k1",
    "EVAL_RO return 0",
    "FCALL f 2 k1 k2 a",
    "ZUNIONSTORE k1 2 k2 k3 WEIGHTS 1 2",
    "ZINTERSTORE k1 1 k2",
    "ZDIFFSTORE k1 2 k2 k3",
    "ZUNION 2 k1 k2 WITHSCORES",
    "ZINTER 3 k1 k2 k3",
    "ZDIFF 1 k1",
    "ZINTERCARD 2 k1 k2 LIMIT 1",
    "SINTERCARD 2 k1 k2",
    "LMPOP 2 k1 k2 LEFT",
    "ZMPOP 1 k1 MIN COUNT 2",
    "BLMPOP 0 2 k1 k2 RIGHT",
    "BZMPOP 1 1 k1 MAX",
    "XREAD COUNT 2 STREAMS k1 k2 0 0",
    "XREAD BLOCK 0 STREAMS k1 $",
    "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS k1 k2 > >",
    "OBJECT ENCODING k1",
    "MEMORY USAGE k1",
    "XINFO STREAM k1",
    "XGROUP CREATE k1 g $",
    "WATCH k1 k2",
    "SORT k1",
];

fn words(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

#[test]
fn arities_match_command_info() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, port) = start_redis_server(dir.path(), &[])?;
    let mut client = RespClient::connect(port)?;
    let specs = CommandSpec::all();
    let queries: Vec<Vec<Bytes>> = specs
        .iter()
        .map(|s| words(&format!("COMMAND INFO {}", s.name)))
        .collect();
    for (spec, reply) in specs.iter().zip(client.pipeline(&queries)?) {
        let Frame::Array(mut infos) = reply else {
            panic!("COMMAND INFO {}: {reply:?}", spec.name);
        };
        let Some(Frame::Array(info)) = infos.pop() else {
            panic!("{} is unknown to redis-server", spec.name);
        };
        assert_eq!(
            info.get(1),
            Some(&Frame::Integer(i64::from(spec.arity))),
            "{}",
            spec.name
        );
        // Where Redis has legacy key positions, ours (as `COMMAND INFO` would show them) agree.
        let Frame::Array(ours) = spec.info_frame() else {
            panic!("info_frame of {} is not an array", spec.name);
        };
        if info.get(3) != Some(&Frame::Integer(0)) && !matches!(spec.kind, Kind::Unsupported(_)) {
            assert_eq!(ours.get(3..6), info.get(3..6), "{}", spec.name);
        }
    }
    Ok(())
}

#[test]
fn unknown_command_error_matches_redis() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, port) = start_redis_server(dir.path(), &[])?;
    let mut client = RespClient::connect(port)?;
    let long = format!("foo {} b", "x".repeat(200));
    for line in ["NOSUCH", "nosuch a b", &long] {
        assert_eq!(client.call(line)?, unknown_command(&words(line)), "{line}");
    }
    Ok(())
}

#[test]
fn key_indices_match_command_getkeys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, port) = start_redis_server(dir.path(), &[])?;
    let mut client = RespClient::connect(port)?;
    let queries: Vec<Vec<Bytes>> = SAMPLES
        .iter()
        .map(|line| [words("COMMAND GETKEYS"), words(line)].concat())
        .collect();
    for (line, reply) in SAMPLES.iter().zip(client.pipeline(&queries)?) {
        let args = words(line);
        let spec = lookup(&args[0]).unwrap_or_else(|| panic!("{line}: not in the table"));
        let ours: Vec<Bytes> = key_indices(spec, &args)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .into_iter()
            .map(|i| args[i].clone())
            .collect();
        let theirs = match reply {
            Frame::Array(keys) => keys
                .into_iter()
                .filter_map(|k| k.as_bytes().cloned())
                .collect(),
            // Redis refuses GETKEYS for calls without keys.
            Frame::Error(_) => Vec::new(),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(ours, theirs, "{line}");
    }
    Ok(())
}

/// Every entry `lookup` returns has its table position (per-command state lives in arrays indexed by
/// it: metrics, upper-case names, CLIENT LIST's `cmd`), from another crate too, where a `const`
/// table could be a copy at another address.
#[test]
fn looked_up_entries_know_their_table_position() {
    for (position, spec) in CommandSpec::all().iter().enumerate() {
        let found = lookup(spec.name.to_uppercase().as_bytes()).expect("known");
        assert_eq!(
            puerta::redis::command::spec::index(found),
            Some(position),
            "{}",
            spec.name
        );
    }
}
