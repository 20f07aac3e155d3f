//! The double-entry ledger: accounts, and transfers that are each a
//! balanced set of postings in integer đồng. A transfer is either posted at
//! once or two-phase (pending, then posted or voided). Cached balances move
//! in the same transaction as the postings they sum.
//!
//! Account rows are updated in id order within a transfer. The payment
//! flows name accounts so that their successive transfers also go in
//! ascending order (`clearing:` < `gateway:` < `hospital_share:` <
//! `merchant:` < `platform:`), so concurrent payments never deadlock.

use sqlx::Row;

use crate::db::WriteTx;

/// Why the ledger refused a movement.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("a transfer needs at least two postings")]
    TooFewPostings,
    #[error("a posting of 0 đồng to `{0}` moves nothing")]
    ZeroPosting(String),
    #[error("postings do not balance: they sum to {0} đồng")]
    Unbalanced(i128),
    #[error("amount overflows 64 bits")]
    Overflow,
    #[error("transfer `{0}` does not exist")]
    NoTransfer(String),
    #[error("transfer `{id}` is {state}, not pending")]
    NotPending { id: String, state: String },
    #[error("ledger storage: {0}")]
    Database(#[from] sqlx::Error),
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    Pending,
    Posted,
    Voided,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Posted => "posted",
            Self::Voided => "voided",
        }
    }
}

/// One leg of a transfer: a signed amount (credit positive) on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPosting {
    pub account: String,
    pub amount: i64,
}

impl LedgerPosting {
    pub fn new(account: impl Into<String>, amount: i64) -> Self {
        Self {
            account: account.into(),
            amount,
        }
    }
}

/// An account's balances: posted, and held by pending transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Balance {
    pub posted: i64,
    pub pending: i64,
}

/// The kind of an account id: the text before its first `:`.
fn account_kind(id: &str) -> &str {
    id.split(':').next().unwrap_or(id)
}

/// Write `postings` as one transfer (`pending`: two-phase) and return its id.
pub async fn transfer(
    tx: &mut WriteTx,
    intent_id: Option<&str>,
    kind: &str,
    postings: &[LedgerPosting],
    pending: bool,
    now: i64,
) -> Result<String, LedgerError> {
    if postings.len() < 2 {
        return Err(LedgerError::TooFewPostings);
    }
    let mut sum: i128 = 0;
    for p in postings {
        if p.amount == 0 {
            return Err(LedgerError::ZeroPosting(p.account.clone()));
        }
        sum += i128::from(p.amount);
    }
    if sum != 0 {
        return Err(LedgerError::Unbalanced(sum));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let state = if pending {
        TransferState::Pending
    } else {
        TransferState::Posted
    };
    sqlx::query(
        "INSERT INTO ledger_transfers (id, intent_id, kind, state, created_at, resolved_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(intent_id)
    .bind(kind)
    .bind(state.as_str())
    .bind(now)
    .bind((!pending).then_some(now))
    .execute(&mut *tx.tx)
    .await?;
    // Accounts are locked in id order in every transaction, so that
    // transactions touching the same accounts never deadlock (PostgreSQL).
    let mut ordered: Vec<&LedgerPosting> = postings.iter().collect();
    ordered.sort_by(|a, b| a.account.cmp(&b.account));
    for p in ordered {
        sqlx::query(
            "INSERT INTO ledger_accounts (id, kind, posted, pending, created_at) \
             VALUES ($1, $2, 0, 0, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&p.account)
        .bind(account_kind(&p.account))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "INSERT INTO ledger_postings (transfer_id, account_id, amount) VALUES ($1, $2, $3)",
        )
        .bind(&id)
        .bind(&p.account)
        .bind(p.amount)
        .execute(&mut *tx.tx)
        .await?;
        let (posted, held) = if pending {
            (0, p.amount)
        } else {
            (p.amount, 0)
        };
        move_cached(tx, &p.account, posted, held).await?;
    }
    Ok(id)
}

/// Post a pending transfer: its postings count in the posted balances.
pub async fn post(tx: &mut WriteTx, transfer_id: &str, now: i64) -> Result<(), LedgerError> {
    resolve(tx, transfer_id, TransferState::Posted, now).await
}

/// Void a pending transfer: its postings no longer count anywhere.
pub async fn void(tx: &mut WriteTx, transfer_id: &str, now: i64) -> Result<(), LedgerError> {
    resolve(tx, transfer_id, TransferState::Voided, now).await
}

async fn resolve(
    tx: &mut WriteTx,
    transfer_id: &str,
    to: TransferState,
    now: i64,
) -> Result<(), LedgerError> {
    // The state guard makes a racing second resolution change nothing.
    let changed = sqlx::query(
        "UPDATE ledger_transfers SET state = $1, resolved_at = $2 WHERE id = $3 AND state = 'pending'",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(transfer_id)
    .execute(&mut *tx.tx)
    .await?
    .rows_affected();
    if changed == 0 {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM ledger_transfers WHERE id = $1")
                .bind(transfer_id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        return Err(match state {
            None => LedgerError::NoTransfer(transfer_id.to_owned()),
            Some(state) => LedgerError::NotPending {
                id: transfer_id.to_owned(),
                state,
            },
        });
    }
    let rows = sqlx::query(
        "SELECT account_id, amount FROM ledger_postings WHERE transfer_id = $1 ORDER BY account_id, id",
    )
        .bind(transfer_id)
        .fetch_all(&mut *tx.tx)
        .await?;
    for row in rows {
        let account: String = row.try_get("account_id")?;
        let amount: i64 = row.try_get("amount")?;
        let held = amount.checked_neg().ok_or(LedgerError::Overflow)?;
        let posted = if to == TransferState::Posted {
            amount
        } else {
            0
        };
        move_cached(tx, &account, posted, held).await?;
    }
    Ok(())
}

/// Add to an account's cached balances in one statement: the row lock it
/// takes makes concurrent movements add up (a read-then-write would lose
/// updates under PostgreSQL's read committed). An overflow fails the
/// statement (PostgreSQL) or yields a non-integer (SQLite), refused here.
async fn move_cached(
    tx: &mut WriteTx,
    account: &str,
    posted: i64,
    pending: i64,
) -> Result<(), LedgerError> {
    let row = sqlx::query(
        "UPDATE ledger_accounts SET posted = posted + $1, pending = pending + $2 WHERE id = $3 \
         RETURNING posted, pending",
    )
    .bind(posted)
    .bind(pending)
    .bind(account)
    .fetch_one(&mut *tx.tx)
    .await?;
    row.try_get::<i64, _>("posted")
        .and_then(|_| row.try_get::<i64, _>("pending"))
        .map_err(|_| LedgerError::Overflow)?;
    Ok(())
}

/// The cached balances of `account` (zero when it has never moved).
pub async fn balance(pool: &sqlx::AnyPool, account: &str) -> Result<Balance, LedgerError> {
    let row = sqlx::query("SELECT posted, pending FROM ledger_accounts WHERE id = $1")
        .bind(account)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(r) => Balance {
            posted: r.try_get("posted")?,
            pending: r.try_get("pending")?,
        },
        None => Balance::default(),
    })
}

/// What a consistency check of the whole ledger found.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LedgerCheck {
    pub accounts: usize,
    pub postings: usize,
    /// Sum of all posted postings (must be 0).
    pub posted_sum: i64,
    /// Sum of all pending postings (must be 0).
    pub pending_sum: i64,
    /// Accounts whose cached balances differ from their postings.
    pub mismatched: Vec<String>,
    /// Transfers whose postings do not sum to zero.
    pub unbalanced: Vec<String>,
}

impl LedgerCheck {
    pub fn is_consistent(&self) -> bool {
        self.posted_sum == 0
            && self.pending_sum == 0
            && self.mismatched.is_empty()
            && self.unbalanced.is_empty()
    }
}

/// Recompute every balance from the postings and compare with the cache.
pub async fn check(pool: &sqlx::AnyPool) -> Result<LedgerCheck, LedgerError> {
    let sums = sqlx::query(
        "SELECT a.id, a.posted, a.pending, \
         CAST(COALESCE(SUM(CASE WHEN t.state = 'posted' THEN p.amount ELSE 0 END), 0) AS BIGINT) AS sum_posted, \
         CAST(COALESCE(SUM(CASE WHEN t.state = 'pending' THEN p.amount ELSE 0 END), 0) AS BIGINT) AS sum_pending, \
         CAST(COUNT(p.id) AS BIGINT) AS n \
         FROM ledger_accounts a LEFT JOIN ledger_postings p ON p.account_id = a.id \
         LEFT JOIN ledger_transfers t ON t.id = p.transfer_id GROUP BY a.id, a.posted, a.pending ORDER BY a.id",
    )
    .fetch_all(pool)
    .await?;
    let mut out = LedgerCheck {
        accounts: sums.len(),
        ..LedgerCheck::default()
    };
    for r in &sums {
        let id: String = r.try_get("id")?;
        let cached = (
            r.try_get::<i64, _>("posted")?,
            r.try_get::<i64, _>("pending")?,
        );
        let derived = (
            r.try_get::<i64, _>("sum_posted")?,
            r.try_get::<i64, _>("sum_pending")?,
        );
        out.postings += usize::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0);
        out.posted_sum = out
            .posted_sum
            .checked_add(derived.0)
            .ok_or(LedgerError::Overflow)?;
        out.pending_sum = out
            .pending_sum
            .checked_add(derived.1)
            .ok_or(LedgerError::Overflow)?;
        if cached != derived {
            out.mismatched.push(id);
        }
    }
    out.unbalanced = sqlx::query_scalar(
        "SELECT transfer_id FROM ledger_postings GROUP BY transfer_id HAVING SUM(amount) <> 0",
    )
    .fetch_all(pool)
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Database;

    async fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let db = Database::connect(&url).await.expect("database");
        (dir, db)
    }

    /// xorshift64*: deterministic, so a failure replays exactly.
    struct Prng(u64);
    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[tokio::test]
    async fn refuses_unbalanced_and_degenerate_transfers() {
        let (_dir, db) = db().await;
        let mut tx = db.begin_write().await.expect("tx");
        let one = [LedgerPosting::new("a:1", 5)];
        assert!(matches!(
            transfer(&mut tx, None, "t", &one, false, 0).await,
            Err(LedgerError::TooFewPostings)
        ));
        let unbalanced = [LedgerPosting::new("a:1", 5), LedgerPosting::new("a:2", -4)];
        assert!(matches!(
            transfer(&mut tx, None, "t", &unbalanced, false, 0).await,
            Err(LedgerError::Unbalanced(1))
        ));
        let zero = [LedgerPosting::new("a:1", 0), LedgerPosting::new("a:2", 0)];
        assert!(matches!(
            transfer(&mut tx, None, "t", &zero, false, 0).await,
            Err(LedgerError::ZeroPosting(_))
        ));
        let ok = [LedgerPosting::new("a:1", 5), LedgerPosting::new("a:2", -5)];
        let id = transfer(&mut tx, None, "t", &ok, true, 0)
            .await
            .expect("pending");
        post(&mut tx, &id, 1).await.expect("post");
        assert!(matches!(
            void(&mut tx, &id, 2).await,
            Err(LedgerError::NotPending { .. })
        ));
        tx.commit().await.expect("commit");
        // A balance that would overflow 64 bits is refused, and rolled back.
        let mut tx = db.begin_write().await.expect("tx");
        let max = [
            LedgerPosting::new("big:1", i64::MAX),
            LedgerPosting::new("big:2", -i64::MAX),
        ];
        transfer(&mut tx, None, "t", &max, false, 0)
            .await
            .expect("max");
        let more = [
            LedgerPosting::new("big:1", 1),
            LedgerPosting::new("big:3", -1),
        ];
        assert!(transfer(&mut tx, None, "t", &more, false, 0).await.is_err());
        drop(tx);
        assert_eq!(balance(&db.pool, "a:1").await.expect("balance").posted, 5);
        assert!(check(&db.pool).await.expect("check").is_consistent());
    }

    /// 1,000 random operations: transfers posted at once, pending ones
    /// posted or voided later, and invalid ones that must change nothing.
    #[tokio::test]
    async fn random_operations_keep_the_ledger_balanced() {
        let (_dir, db) = db().await;
        let accounts: Vec<String> = (0..8).map(|i| format!("acct:{i}")).collect();
        let mut rng = Prng(0x5EED_2026_0006);
        let mut pending: Vec<String> = Vec::new();
        let mut expected = std::collections::BTreeMap::<String, Balance>::new();
        let mut held = std::collections::BTreeMap::<String, Vec<LedgerPosting>>::new();
        for _ in 0..1000 {
            let mut tx = db.begin_write().await.expect("tx");
            match rng.below(5) {
                0 | 1 => {
                    // A balanced set of 2 to 4 postings.
                    let legs = 2 + rng.below(3) as usize;
                    let mut postings = Vec::new();
                    let mut sum = 0i64;
                    for _ in 0..legs - 1 {
                        let amount = 1 + rng.below(5_000_000) as i64;
                        let amount = if rng.below(2) == 0 { amount } else { -amount };
                        sum += amount;
                        let a = &accounts[rng.below(8) as usize];
                        postings.push(LedgerPosting::new(a.clone(), amount));
                    }
                    if sum == 0 {
                        continue;
                    }
                    let a = &accounts[rng.below(8) as usize];
                    postings.push(LedgerPosting::new(a.clone(), -sum));
                    let two_phase = rng.below(2) == 0;
                    let id = transfer(&mut tx, None, "random", &postings, two_phase, 0)
                        .await
                        .expect("balanced transfer");
                    for p in &postings {
                        let b = expected.entry(p.account.clone()).or_default();
                        if two_phase {
                            b.pending += p.amount;
                        } else {
                            b.posted += p.amount;
                        }
                    }
                    if two_phase {
                        pending.push(id.clone());
                        held.insert(id, postings);
                    }
                }
                2 if !pending.is_empty() => {
                    let id = pending.swap_remove(rng.below(pending.len() as u64) as usize);
                    let post_it = rng.below(2) == 0;
                    if post_it {
                        post(&mut tx, &id, 1).await.expect("post");
                    } else {
                        void(&mut tx, &id, 1).await.expect("void");
                    }
                    for p in held.remove(&id).unwrap_or_default() {
                        let b = expected.entry(p.account.clone()).or_default();
                        b.pending -= p.amount;
                        if post_it {
                            b.posted += p.amount;
                        }
                    }
                    // Resolving twice is refused.
                    assert!(post(&mut tx, &id, 2).await.is_err());
                }
                _ => {
                    // Invalid: unbalanced by a random non-zero amount.
                    let off = 1 + rng.below(1000) as i64;
                    let bad = [
                        LedgerPosting::new(accounts[0].clone(), 100),
                        LedgerPosting::new(accounts[1].clone(), -100 + off),
                    ];
                    assert!(
                        transfer(&mut tx, None, "bad", &bad, false, 0)
                            .await
                            .is_err()
                    );
                }
            }
            tx.commit().await.expect("commit");
        }
        let report = check(&db.pool).await.expect("check");
        assert!(report.is_consistent(), "{report:?}");
        assert!(report.postings > 500, "{report:?}");
        for (account, b) in expected {
            assert_eq!(
                balance(&db.pool, &account).await.expect("balance"),
                b,
                "{account}"
            );
        }
    }
}
