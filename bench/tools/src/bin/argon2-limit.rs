//! The machine's Argon2 limit for bench/run: how many password checks a second all its
//! cores could compute doing nothing else, taken as cores ÷ the time of one hash, with
//! Tessera's parameters (Argon2id, 19 MiB, 2 passes, 1 lane) and its working memory
//! reused from hash to hash as Tessera's hashing threads do. Then, for the write-up, what
//! the cores really give when all of them hash at once (they share caches and memory
//! bandwidth, and the machine may be shared). Prints one line:
//! `<milliseconds per hash> <cores> <cores ÷ time of one hash> <hashes a second, all cores>`.
//!
//! ```text
//! argon2-limit [SECONDS, default 2]
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};

/// At least this many hashes are timed, however short the run.
const MIN_HASHES: u32 = 5;

/// Hashes with Tessera's parameters until `budget` has passed (and at least
/// [`MIN_HASHES`]); returns how many and how long they took.
fn hash_for(budget: Duration) -> Result<(u32, Duration), String> {
    let params = Params::new(19 * 1024, 2, 1, Some(32)).map_err(|error| error.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = vec![Block::default(); params.block_count()];
    let mut digest = [0u8; 32];
    let mut hash = |input: u32| {
        argon2
            .hash_password_into_with_memory(
                &input.to_le_bytes(),
                b"bench-salt-16byt",
                &mut digest,
                &mut memory,
            )
            .map_err(|error| error.to_string())
    };

    // One untimed hash touches the memory first.
    hash(0)?;
    let started = Instant::now();
    let mut count = 0u32;
    while count < MIN_HASHES || started.elapsed() < budget {
        count += 1;
        hash(count)?;
    }
    Ok((count, started.elapsed()))
}

fn main() -> Result<(), Box<dyn Error>> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 2.0,
    };
    let budget = Duration::from_secs_f64(seconds);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    let (count, elapsed) = hash_for(budget)?;
    let per_hash = elapsed.as_secs_f64() / f64::from(count);
    // Cores are few: the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let limit = cores as f64 / per_hash;

    let threads: Vec<_> = (0..cores)
        .map(|_| std::thread::spawn(move || hash_for(budget)))
        .collect();
    let mut all_cores = 0.0;
    for thread in threads {
        let (count, elapsed) = thread.join().map_err(|_| "a hashing thread panicked")??;
        all_cores += f64::from(count) / elapsed.as_secs_f64();
    }
    println!("{:.2} {cores} {limit:.1} {all_cores:.1}", per_hash * 1000.0);
    Ok(())
}
