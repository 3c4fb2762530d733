//! Ten thousand pairs through the real binary on the path `mongo::forwarding` picks (this file also
//! runs as `mongodb_many_pairs_splice`; the kernel path has its own in `kernel_path`): each client gets
//! its own echo, and once they close Puerta's descriptor count is back where it started.

use puerta_tests::kernel::{fd_count, start, stop, wait_for, PinDir};
use puerta_tests::mongo::forwarding;
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::pairs::{open_clients, raise_nofile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pairs_leave_no_descriptors_behind() -> anyhow::Result<()> {
    const PAIRS: u64 = 10_000;
    // Per pair: two sockets in Puerta (and a pipe per direction, two fds each, on the splice path),
    // a client and an echo socket here.
    let per_pair_in_puerta = if forwarding() == "splice" { 6 } else { 2 };
    let hard = raise_nofile((per_pair_in_puerta + 2) * PAIRS + 1000);
    let per_wave = PAIRS.min(hard.saturating_sub(400) / per_pair_in_puerta);
    let backend = MongoEcho::start().await?;
    let pins = PinDir::new("pairs");
    let puerta = start(&[backend.addr], &forwarding(), &pins).await?;
    let pid = puerta.process.pid();
    // The readiness probe's flow closes on its own.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let baseline = fd_count(pid)?;
    let mut done = 0;
    while done < PAIRS {
        let wave = per_wave.min(PAIRS - done);
        let open = open_clients(puerta.listen, done, wave).await?;
        let busy = fd_count(pid)?;
        assert!(
            busy >= baseline + 2 * wave as usize,
            "{wave} pairs open but Puerta holds {busy} fds (baseline {baseline})"
        );
        drop(open);
        wait_for("fd count back to baseline", || {
            Ok(fd_count(pid)? <= baseline)
        })
        .await?;
        done += wave;
    }
    tokio::task::block_in_place(|| stop(puerta))?;
    Ok(())
}
