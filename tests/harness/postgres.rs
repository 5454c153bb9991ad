//! PostgreSQL for tests: a database of the test's own (dropped with it)
//! and the `[store]` table that points a server at it. An unreachable
//! PostgreSQL skips the test outside CI and fails it under CI.

use std::path::Path;

use herald::store::postgres::test_database::TempDatabase;

/// A fresh database, or `None` to skip (see the module docs).
pub fn temp_database() -> Option<TempDatabase> {
    TempDatabase::for_test()
}

/// A `[store]` table for `db`, its connection string read from a file in
/// `dir` (so that the config holds no password).
pub fn store_table(db: &TempDatabase, dir: &Path) -> String {
    store_table_url(db.url_text(), dir)
}

/// A `[store]` table for the connection string `url` (read from a file
/// in `dir`).
pub fn store_table_url(url: &str, dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("create the server dir");
    let file = dir.join("store-url");
    std::fs::write(&file, url).expect("write the connection string");
    format!(
        "\n[store]\nkind = \"postgres\"\nurl_file = \"{}\"\npool_size = 4\nsslmode = \"disable\"\n",
        file.display()
    )
}
