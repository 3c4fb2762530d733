//! Ten thousand pairs through the real binary on the path `mongo::forwarding` picks (this file also
//! runs as `mongodb_many_pairs_splice`; the kernel path has its own in `kernel_path`): each client gets
//! its own echo, and once they close Puerta's descriptor count is back where it started.

use std::time::Duration;

use puerta_tests::fds::Fds;
use puerta_tests::kernel::{start, stop, PinDir};
use puerta_tests::mongo::forwarding;
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::pairs::{open_clients, pairs_per_wave, raise_nofile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pairs_leave_no_descriptors_behind() -> anyhow::Result<()> {
    const PAIRS: u64 = 10_000;
    // Per pair: two sockets in Puerta (and a pipe per direction, two fds each, on the splice path),
    // a client and an echo socket here.
    let per_pair_in_puerta = if forwarding() == "splice" { 6 } else { 2 };
    let hard = raise_nofile((per_pair_in_puerta + 2) * PAIRS + 1000);
    let per_wave = pairs_per_wave(PAIRS, hard, per_pair_in_puerta);
    let backend = MongoEcho::start().await?;
    let pins = PinDir::new("pairs");
    let puerta = start(&[backend.addr], &forwarding(), &pins).await?;
    let pid = puerta.process.pid();
    // The quiet count outlasts the readiness probe's flow, which closes on its own.
    let baseline = Fds::quiet(pid).await?;
    let mut done = 0;
    while done < PAIRS {
        let wave = per_wave.min(PAIRS - done);
        let open = open_clients(puerta.listen, done, wave).await?;
        let busy = Fds::of(pid)?.total;
        assert!(
            busy >= baseline.total + 2 * wave as usize,
            "{wave} pairs open but Puerta holds {busy} fds (baseline {})",
            baseline.total
        );
        drop(open);
        Fds::wait_back_to(pid, &baseline, Duration::from_secs(30)).await?;
        done += wave;
    }
    tokio::task::block_in_place(|| stop(puerta))?;
    Ok(())
}
