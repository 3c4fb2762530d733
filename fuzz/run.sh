#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and fails on the first crash.
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). Corpora persist in fuzz/corpus/<target>;
# crashes land in fuzz/artifacts/<target> and should become regression tests.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
targets=$(cargo +nightly fuzz list)
for target in $targets; do
    echo "== fuzz $target for ${seconds}s"
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|panicked|Done" || true
    # A crash makes cargo fuzz exit non-zero; pipefail is defeated by grep, so check artifacts.
    if compgen -G "artifacts/$target/crash-*" > /dev/null; then
        echo "crash found in $target: see fuzz/artifacts/$target" >&2
        exit 1
    fi
done
