//! The one process-wide context: the state every feature keeps for the whole process (the
//! observers, the two-phase coordinator, later the journal), in one place instead of one `static`
//! per feature. [`ConnectionManager`](crate::ConnectionManager) is the user's facade over it.
//!
//! Each feature keeps one value of its own type here, so that this module, low in the layers,
//! names none of the features above it. Guarantees: reading a value takes no lock (an `ArcSwap`
//! load); an update replaces the whole map, so that a reader sees every value before or after it,
//! never half.

use arc_swap::ArcSwap;
use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

type Values = BTreeMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// The process-wide state of every feature, each under its own type.
pub(crate) struct Context {
    values: ArcSwap<Values>,
}

static CONTEXT: LazyLock<Context> = LazyLock::new(|| Context {
    values: ArcSwap::from_pointee(Values::new()),
});

/// The context of the process.
pub(crate) fn context() -> &'static Context {
    &CONTEXT
}

impl Context {
    /// The current value of type `T`, if one was stored.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let values = self.values.load();
        let value = values.get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok()
    }

    /// Replaces the value of type `T` by `update(current)`, atomically with respect to other
    /// updates; returns the value it replaced.
    pub(crate) fn update<T: Any + Send + Sync>(&self, update: impl Fn(Option<&T>) -> T) -> Option<Arc<T>> {
        let previous = self.values.rcu(|values| {
            let current = values.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>());
            let mut next = Values::clone(values);
            next.insert(TypeId::of::<T>(), Arc::new(update(current)));
            next
        });
        previous
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_keeps_its_own_value() {
        #[derive(Debug, PartialEq)]
        struct Counter(u32);
        #[derive(Debug, PartialEq)]
        struct Label(&'static str);
        let context = Context {
            values: ArcSwap::from_pointee(Values::new()),
        };
        assert!(context.get::<Counter>().is_none());
        context.update(|c: Option<&Counter>| Counter(c.map_or(1, |c| c.0 + 1)));
        let previous = context.update(|c: Option<&Counter>| Counter(c.map_or(1, |c| c.0 + 1)));
        context.update(|_: Option<&Label>| Label("x"));
        assert_eq!(previous.as_deref(), Some(&Counter(1)));
        assert_eq!(context.get::<Counter>().as_deref(), Some(&Counter(2)));
        assert_eq!(context.get::<Label>().as_deref(), Some(&Label("x")));
    }
}
