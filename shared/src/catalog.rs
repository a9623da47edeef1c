// TEMPORARY STUB written by the lead so the service layer compiles; helper-3 replaces this
// whole file with the real catalog (and keeps the `pub mod catalog;` line in lib.rs).
use std::sync::OnceLock;

use crate::domain::Provider;

pub struct Catalog {
    providers: Vec<Provider>,
}

impl Catalog {
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog {
            providers: Vec::new(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.key == key)
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }
}
