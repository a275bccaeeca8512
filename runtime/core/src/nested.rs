//! The one way a call starts a sandbox of its own (a tool a role calls, a
//! program run through `exec`): the child gets no more fuel than its caller
//! has left and no later deadline than its caller's, and the fuel it used is
//! charged back to the caller before the caller runs on. So `--fuel`, a
//! task's limits and a run's fuel budget hold for everything a call starts,
//! however deeply it nests.

use std::future::Future;
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;

use crate::limits::Limits;

/// What a child may spend: what its caller has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allotment {
    pub(crate) fuel: u64,
    pub(crate) deadline: Instant,
}

impl Allotment {
    /// `limits` lowered to this allotment. With `keep_margin` the child
    /// stops a little before its caller must (a quarter of the time left,
    /// at most 100 ms, and an eighth of the fuel left, at most 50 million),
    /// so the caller gets the child's result back as data instead of
    /// running out itself.
    pub(crate) fn cap(&self, mut limits: Limits, keep_margin: bool) -> Limits {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let (margin, fuel_margin) = if keep_margin {
            (
                (remaining / 4).min(Duration::from_millis(100)),
                (self.fuel / 8).min(50_000_000),
            )
        } else {
            (Duration::ZERO, 0)
        };
        limits.fuel = limits.fuel.min(self.fuel - fuel_margin).max(1);
        limits.timeout = limits
            .timeout
            .min(remaining.saturating_sub(margin))
            .max(Duration::from_millis(1));
        limits
    }
}

/// What a child reports back besides its result.
pub(crate) trait Spent {
    /// Fuel the child used.
    fn fuel_used(&self) -> u64;
}

/// Runs `child` with what the caller in `store` has left until `deadline`,
/// then charges the fuel it used to the caller.
pub(crate) async fn run_child<T, R, F, Fut>(
    store: &mut StoreContextMut<'_, T>,
    deadline: Instant,
    child: F,
) -> wasmtime::Result<R>
where
    F: FnOnce(Allotment) -> Fut,
    Fut: Future<Output = R>,
    R: Spent,
{
    let fuel_left = store.get_fuel()?;
    let result = child(Allotment {
        fuel: fuel_left,
        deadline,
    })
    .await;
    store.set_fuel(fuel_left.saturating_sub(result.fuel_used()))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{AsContextMut, Config, Engine, Store};

    struct Used(u64);

    impl Spent for Used {
        fn fuel_used(&self) -> u64 {
            self.0
        }
    }

    fn store(fuel: u64) -> Store<()> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_fuel(fuel).unwrap();
        store
    }

    #[tokio::test]
    async fn a_child_gets_what_is_left_and_is_charged_back() {
        let mut store = store(1_000);
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut given = None;
        run_child(&mut store.as_context_mut(), deadline, |allotment| {
            given = Some(allotment);
            async { Used(300) }
        })
        .await
        .unwrap();
        assert_eq!(given.unwrap().fuel, 1_000);
        assert_eq!(store.get_fuel().unwrap(), 700);

        // A second child sees only what the first left.
        run_child(&mut store.as_context_mut(), deadline, |allotment| {
            given = Some(allotment);
            async { Used(700) }
        })
        .await
        .unwrap();
        assert_eq!(given.unwrap().fuel, 700);
        assert_eq!(store.get_fuel().unwrap(), 0);
    }

    #[test]
    fn limits_are_capped_to_the_allotment() {
        let allotment = Allotment {
            fuel: 10,
            deadline: Instant::now() + Duration::from_millis(400),
        };
        let capped = allotment.cap(Limits::default(), true);
        assert_eq!(capped.fuel, 9, "an eighth kept for the caller");
        assert!(capped.timeout <= Duration::from_millis(300), "{capped:?}");
        let uncapped_margin = allotment.cap(Limits::default(), false);
        assert!(uncapped_margin.timeout > Duration::from_millis(300));
        assert_eq!(uncapped_margin.fuel, 10);
        let spent = Allotment {
            fuel: 0,
            deadline: Instant::now(),
        };
        let floor = spent.cap(Limits::default(), true);
        assert_eq!((floor.fuel, floor.timeout), (1, Duration::from_millis(1)));
    }
}
