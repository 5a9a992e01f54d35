//! The model kinds this build can train and serve, in one table.
//!
//! Adding a kind: a module here whose weights type implements [`crate::ModelKind`], and its
//! line in [`KINDS`]. Training (`rps-train --model-kind <name>`), the package format, the
//! promotion gate, walk-forward evaluation and serving then handle it.

pub mod lstm;
pub mod persistence;

use crate::model::Kind;

/// Every registered kind.
pub static KINDS: &[Kind] = &[
    Kind::of::<lstm::LstmWeights>(),
    Kind::of::<persistence::PersistenceWeights>(),
];

/// The kind trained when none is named, and that of packages whose metadata names none.
pub const DEFAULT: &str = lstm::NAME;

/// The registered kind called `name`, or a message naming the kinds there are.
pub fn get(name: &str) -> Result<&'static Kind, String> {
    KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        format!(
            "model kind '{name}' is not known to this build (known: {})",
            names().collect::<Vec<_>>().join(", ")
        )
    })
}

/// The names of the registered kinds, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique_and_the_default_is_registered() {
        let mut n: Vec<_> = names().collect();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), KINDS.len());
        assert!(get(DEFAULT).is_ok());
        let e = get("prophet").unwrap_err();
        assert!(e.contains("'prophet'") && e.contains("lstm"), "{e}");
    }
}
