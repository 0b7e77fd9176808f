//! Migrations embedded at build time from `migrations/postgres` and `migrations/sqlite`.

use crate::error::StoreError;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

mod files {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(crate) async fn postgres() -> Result<Migrator, StoreError> {
    Ok(Migrator::new(Embedded(files::POSTGRES)).await?)
}

pub(crate) async fn sqlite() -> Result<Migrator, StoreError> {
    Ok(Migrator::new(Embedded(files::SQLITE)).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_databases_have_the_same_migration_versions() {
        let versions = |files: &[(i64, &str, &str)]| files.iter().map(|f| f.0).collect::<Vec<_>>();
        assert!(!super::files::POSTGRES.is_empty());
        assert_eq!(
            versions(super::files::POSTGRES),
            versions(super::files::SQLITE)
        );
    }
}
