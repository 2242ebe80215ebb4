#!/usr/bin/env bash
# Formatting, clippy (warnings are errors), shell syntax, and generated files in sync.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "bash -n hack/*.sh kind/*.sh"
for f in hack/*.sh kind/*.sh; do bash -n "$f"; done
