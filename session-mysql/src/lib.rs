//! A MySQL/MariaDB [`SessionStore`](session_core::SessionStore) on sqlx (work in progress).
