use super::*;
use bytes::Bytes;

fn call(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

fn keys(line: &str) -> Result<Vec<usize>, CommandError> {
    let args = call(line);
    let spec = lookup(&args[0]).unwrap_or_else(|| panic!("unknown command in {line:?}"));
    key_indices(spec, &args)
}

fn blocking(line: &str) -> bool {
    let args = call(line);
    blocks(lookup(&args[0]).unwrap(), &args)
}

#[test]
fn lookup_ignores_case_and_knows_every_entry() {
    assert_eq!(lookup(b"get").map(|s| s.name), Some("get"));
    assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
    assert_eq!(
        lookup(b"RESTORE-ASKING").map(|s| s.name),
        Some("restore-asking")
    );
    assert_eq!(
        lookup(b"GEORADIUS_RO").map(|s| s.name),
        Some("georadius_ro")
    );
    for unknown in [
        &b""[..],
        b"nosuchcommand",
        b"ge",
        b"gett",
        b"get\0",
        b"\xff\xfe",
    ] {
        assert_eq!(lookup(unknown), None, "{unknown:?}");
    }
    for spec in CommandSpec::all() {
        assert_eq!(lookup(spec.name.as_bytes()), Some(spec));
        assert_eq!(lookup(spec.name.to_uppercase().as_bytes()), Some(spec));
    }
}

#[test]
fn table_is_sorted_lowercase_and_unique() {
    let names: Vec<&str> = CommandSpec::all().iter().map(|s| s.name).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted/unique");
    assert!(names.iter().all(|n| *n == n.to_lowercase()));
    assert!(names.len() >= 200, "only {} commands", names.len());
}

#[test]
fn every_command_has_a_route() {
    for spec in CommandSpec::all() {
        let by_keys = matches!(spec.kind, Kind::Keyed | Kind::Split(_));
        assert!(
            !by_keys || spec.keys != KeySpec::None,
            "{} is routed by keys it does not have",
            spec.name
        );
        if let Kind::Split(merge) = spec.kind {
            assert!(spec.keys != KeySpec::None, "{}", spec.name);
            assert!(merge != Merge::Concat, "{}", spec.name);
        }
        if let Kind::FanOut(merge) = spec.kind {
            assert!(
                merge != Merge::Values,
                "{}: Values needs key positions",
                spec.name
            );
        }
        assert!(
            !(spec.has(flag::READONLY) && spec.has(flag::WRITE)),
            "{}",
            spec.name
        );
    }
}

#[test]
fn arity_errors_use_redis_wording() {
    assert_eq!(keys("GET"), Err(CommandError::WrongArity("get")));
    assert_eq!(keys("GET a b"), Err(CommandError::WrongArity("get")));
    assert_eq!(keys("SET a"), Err(CommandError::WrongArity("set")));
    assert_eq!(
        CommandError::WrongArity("get").to_string(),
        "ERR wrong number of arguments for 'get' command"
    );
}

#[test]
fn single_key() {
    assert_eq!(keys("GET a"), Ok(vec![1]));
    assert_eq!(keys("set a b EX 10"), Ok(vec![1]));
    assert_eq!(keys("HSET h f v f2 v2"), Ok(vec![1]));
    assert_eq!(keys("OBJECT ENCODING k"), Ok(vec![2]));
    assert_eq!(keys("XINFO STREAM s"), Ok(vec![2]));
    assert_eq!(keys("OBJECT HELP"), Ok(vec![]));
}

#[test]
fn no_keys() {
    assert_eq!(keys("PING"), Ok(vec![]));
    assert_eq!(keys("PUBLISH chan msg"), Ok(vec![]));
    assert_eq!(keys("RANDOMKEY"), Ok(vec![]));
    let kind = |name: &str| lookup(name.as_bytes()).unwrap().kind;
    assert_eq!(kind("randomkey"), Kind::AnyMaster);
    assert_eq!(kind("flushall"), Kind::Admin);
    assert_eq!(kind("dbsize"), Kind::FanOut(Merge::Sum));
    assert_eq!(kind("cluster"), Kind::Local(Local::Cluster));
    assert_eq!(kind("shutdown"), Kind::Unsupported(why::NODE_ADMIN));
    assert_eq!(kind("exec"), Kind::Transaction(Step::Exec));
    assert!(kind("sunsubscribe")
        .subscription()
        .is_some_and(|s| s.sharded && s.unsubscribe));
    assert!(kind("auth").before_auth() && !kind("get").before_auth());
    assert!(kind("quit").outside_transaction() && !kind("ping").outside_transaction());
}

#[test]
fn key_ranges() {
    assert_eq!(keys("MGET a b c"), Ok(vec![1, 2, 3]));
    assert_eq!(keys("DEL a"), Ok(vec![1]));
    assert_eq!(keys("MSET a 1 b 2"), Ok(vec![1, 3]));
    assert_eq!(keys("MSET a 1 b"), Err(CommandError::WrongArity("mset")));
    assert_eq!(keys("BLPOP a b 0"), Ok(vec![1, 2]));
    assert_eq!(keys("RENAME a b"), Ok(vec![1, 2]));
    assert_eq!(keys("SMOVE a b member"), Ok(vec![1, 2]));
    assert_eq!(keys("BITOP AND dest a b"), Ok(vec![2, 3, 4]));
    assert_eq!(keys("SUNSUBSCRIBE"), Ok(vec![]));
    assert_eq!(keys("SSUBSCRIBE x y"), Ok(vec![1, 2]));
    for (name, merge) in [
        ("mget", Merge::Values),
        ("mset", Merge::AllOk),
        ("del", Merge::Sum),
        ("unlink", Merge::Sum),
        ("exists", Merge::Sum),
        ("touch", Merge::Sum),
    ] {
        assert_eq!(
            lookup(name.as_bytes()).unwrap().kind,
            Kind::Split(merge),
            "{name}"
        );
    }
}

#[test]
fn numkeys_commands() {
    assert_eq!(keys("EVAL script 2 a b arg"), Ok(vec![3, 4]));
    assert_eq!(keys("EVALSHA sha 0 arg"), Ok(vec![]));
    assert_eq!(keys("FCALL f 1 k"), Ok(vec![3]));
    assert_eq!(keys("EVAL s 3 a b"), Err(CommandError::TooManyKeys));
    assert_eq!(keys("EVAL s -1 a"), Err(CommandError::NegativeKeys));
    assert_eq!(keys("EVAL s x a"), Err(CommandError::NotAnInteger));
    assert_eq!(
        keys("ZUNIONSTORE dest 2 a b WEIGHTS 1 2"),
        Ok(vec![1, 3, 4])
    );
    assert_eq!(keys("ZINTER 2 a b WITHSCORES"), Ok(vec![2, 3]));
    assert_eq!(keys("LMPOP 2 a b LEFT COUNT 3"), Ok(vec![2, 3]));
    assert_eq!(keys("BLMPOP 0.5 1 a LEFT"), Ok(vec![3]));
    assert_eq!(keys("SINTERCARD 1 a LIMIT 2"), Ok(vec![2]));
}

#[test]
fn stream_reads() {
    assert_eq!(keys("XREAD STREAMS a b 0 0"), Ok(vec![2, 3]));
    assert_eq!(keys("xread count 10 block 0 streams a 0"), Ok(vec![6]));
    assert_eq!(
        keys("XREADGROUP GROUP STREAMS c NOACK STREAMS a b > >"),
        Ok(vec![6, 7])
    );
    assert_eq!(
        keys("XREAD STREAMS a b 0"),
        Err(CommandError::UnbalancedStreams("xread"))
    );
    assert_eq!(keys("XREAD COUNT 1 a 0"), Err(CommandError::Syntax));
    assert_eq!(
        keys("XREAD COUNT 1 STREAMS"),
        Err(CommandError::UnbalancedStreams("xread"))
    );
}

#[test]
fn blocking_calls() {
    assert!(blocking("BLPOP a 0"));
    assert!(blocking("BLMOVE a b LEFT RIGHT 0"));
    assert!(!blocking("LPOP a"));
    assert!(!blocking("XREAD STREAMS a 0"));
    assert!(blocking("XREAD BLOCK 100 STREAMS a 0"));
    assert!(blocking("XREADGROUP GROUP g c BLOCK 0 STREAMS a >"));
    assert!(!blocking("XREADGROUP GROUP BLOCK c STREAMS a >"));
}

#[test]
fn command_slot_needs_one_slot() {
    let slot = |line: &str| {
        let args = call(line);
        command_slot(lookup(&args[0]).unwrap(), &args)
    };
    let foo = crate::redis::command::slots::key_slot(b"foo");
    assert_eq!(slot("GET foo"), Ok(Some(foo)));
    assert_eq!(slot("PING"), Ok(None));
    assert_eq!(slot("RENAME {foo}a {foo}b"), Ok(Some(foo)));
    assert_eq!(slot("RENAME foo bar"), Err(CommandError::CrossSlot));
    assert_eq!(slot("GET"), Err(CommandError::WrongArity("get")));
    assert_eq!(
        CommandError::CrossSlot.to_string(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
}
