//! Live resharding under load: redis-cli moves 2000 slots between masters while 20 clients write and
//! read their own keys through Puerta. MOVED (and, timing permitting, ASK) happen for real; clients must see no error, and
//! every acknowledged write must be readable afterwards.

use puerta_tests::redis_cluster::ProxiedCluster;

#[test]
fn live_resharding_is_invisible_to_clients() -> anyhow::Result<()> {
    // Only redirects (not the periodic refresh) tell the proxy about moved slots.
    let env = ProxiedCluster::start("slot_refresh_interval_sec = 3600")?;
    let dir = tempfile::tempdir()?;
    let stop = dir.path().join("stop");
    let workload = env.workload(&stop, 20, "strict")?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let masters = env.cluster.masters()?;
    assert_eq!(masters.len(), 3, "{masters:?}");
    env.cluster.reshard(masters[0], masters[1], 2000)?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let output = env.finish_workload(workload, &stop)?;
    println!("{output}");
    let moved = env.proxy_counter("moved_redirects")?;
    let ask = env.proxy_counter("ask_redirects")?;
    println!("moved_redirects={moved} ask_redirects={ask}");
    assert!(moved > 0, "resharding must have produced MOVED redirects");
    Ok(())
}

/// The parts of a multi-key command that one node owns go to it as one request. When that node has
/// given one part's slot away since Puerta last looked, that part alone follows the MOVED and the
/// others are answered as they are: the client sees one answer, as if nothing had moved.
#[test]
fn a_moved_part_of_a_split_command_is_retried_alone() -> anyhow::Result<()> {
    use puerta::redis::resp::Frame;
    use puerta_tests::resp_client::RespClient;
    let env = ProxiedCluster::start("slot_refresh_interval_sec = 3600")?;
    let masters = env.cluster.masters()?;
    let (from, to) = (masters[0], masters[1]);
    let mut proxy = RespClient::connect(env.port())?;
    let mut node = RespClient::connect(from)?;
    let moved = |frame: &Frame| matches!(frame, Frame::Error(e) if e.starts_with(b"MOVED"));
    // Keys the first master serves now, as Puerta's slot map says too.
    let mut mine = Vec::new();
    for i in 0..3000 {
        let key = format!("part:{i}");
        if !moved(&node.command(&["GET", &key])?) {
            mine.push(key);
        }
    }
    assert_eq!(proxy.command(&["PING"])?, Frame::simple("PONG"));
    env.cluster.reshard(from, to, 200)?;
    let mut gone = None;
    let mut stayed = None;
    for key in &mine {
        match moved(&node.command(&["GET", key])?) {
            true => gone = gone.or(Some(key.clone())),
            false => stayed = stayed.or(Some(key.clone())),
        }
    }
    let (gone, stayed) = (gone.expect("a key moved"), stayed.expect("a key stayed"));
    let before = env.proxy_counter("moved_redirects")?;
    let ok = proxy.command(&["MSET", &gone, "g", &stayed, "s"])?;
    assert_eq!(ok, Frame::simple("OK"));
    assert!(
        env.proxy_counter("moved_redirects")? > before,
        "the moved part met MOVED"
    );
    let values = proxy.command(&["MGET", &stayed, &gone])?;
    assert_eq!(
        values,
        Frame::Array(vec![Frame::bulk("s"), Frame::bulk("g")])
    );
    assert_eq!(proxy.command(&["DEL", &gone, &stayed])?, Frame::Integer(2));
    Ok(())
}
