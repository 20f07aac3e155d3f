//! `runtime accounts …`: invite the first operator (or a hospital's first
//! admin) on a database without the demo seed; each prints a one-time
//! invitation link to pass on (docs/identity.md, Bootstrap).

use anyhow::Context;
use clap::Subcommand;

use super::staff::NewStaff;
use super::{IdentityOptions, IdentityService};
use crate::db::Database;

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Invite a platform operator; prints the link that sets their password.
    AddOperator {
        #[arg(long)]
        username: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Database: an SQLite file path, sqlite://PATH or postgres://...
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        /// The public base URL the link starts with (as `serve --issuer`);
        /// required: a link to a default address would reach no one.
        #[arg(long, env = "VTH_ISSUER")]
        issuer: String,
    },
    /// Invite a ministry reviewer (thẩm định viên), who approves plugin
    /// versions; prints the link that sets their password.
    AddReviewer {
        #[arg(long)]
        username: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        #[arg(long, env = "VTH_ISSUER")]
        issuer: String,
    },
    /// Invite a hospital's admin; prints the link that sets their password.
    InviteHospitalAdmin {
        /// The hospital's id.
        #[arg(long)]
        hospital: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: String,
        /// Their citizen ID (CCCD, 12 digits).
        #[arg(long)]
        national_id: String,
        #[arg(long, default_value = "data/vtelehealth.db", env = "VTH_DATABASE")]
        db: String,
        #[arg(long, env = "VTH_ISSUER")]
        issuer: String,
    },
}

/// Run an `accounts` command against `database_url`.
pub async fn run(command: AccountsCommand, database_url: String) -> anyhow::Result<()> {
    let (issuer, action) = match &command {
        AccountsCommand::AddOperator { issuer, .. } => (issuer.clone(), "operator"),
        AccountsCommand::AddReviewer { issuer, .. } => (issuer.clone(), "reviewer"),
        AccountsCommand::InviteHospitalAdmin { issuer, .. } => (issuer.clone(), "hospital admin"),
    };
    let db = Database::connect(&database_url).await?;
    let audit = crate::audit::AuditLog::new(db.clone());
    let identity = IdentityService::new(
        db,
        IdentityOptions {
            issuer: Some(issuer),
            ..IdentityOptions::default()
        },
    )
    .await?;
    let (user, invitation, hospital) = match command {
        AccountsCommand::AddOperator { username, name, .. } => {
            let (u, i) = identity
                .add_operator(&username, &name, "cli")
                .await
                .with_context(|| format!("inviting operator `{username}`"))?;
            (u, i, None)
        }
        AccountsCommand::AddReviewer { username, name, .. } => {
            let (u, i) = identity
                .add_ministry_account(&username, &name, super::Role::Reviewer, "cli")
                .await
                .with_context(|| format!("inviting reviewer `{username}`"))?;
            (u, i, None)
        }
        AccountsCommand::InviteHospitalAdmin {
            hospital,
            username,
            name,
            national_id,
            ..
        } => {
            let new = NewStaff {
                username: username.clone(),
                display_name: name,
                national_id,
                roles: vec!["hospital-admin".into()],
                ..NewStaff::default()
            };
            let (u, i) = identity
                .create_staff(&hospital, &new, "cli", super::staff::Creation::Unaudited)
                .await
                .with_context(|| format!("inviting `{username}` to `{hospital}`"))?;
            (u, i, Some(hospital))
        }
    };
    audit
        .append(crate::audit::AuditEvent {
            actor: "cli".into(),
            action: "identity.account_invited".into(),
            target: format!("user:{}", user.id),
            hospital_id: hospital,
            details: serde_json::json!({ "username": user.username, "roles": user.roles }),
        })
        .await
        .context("auditing the invitation")?;
    println!(
        "Invited {action} `{}` ({}). One-time link, valid 72 hours:\n{}",
        user.username, user.display_name, invitation.url
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::AccountsCommand;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AccountsCommand,
    }

    #[test]
    fn a_link_needs_the_public_issuer() {
        // The environment may name it (VTH_ISSUER): then nothing to check.
        if std::env::var_os("VTH_ISSUER").is_some() {
            return;
        }
        let base = [
            "runtime",
            "add-operator",
            "--username",
            "vanhanh",
            "--name",
            "V",
        ];
        let err = Cli::try_parse_from(base).expect_err("no issuer");
        assert!(err.to_string().contains("--issuer"), "{err}");
        let ok = Cli::try_parse_from(
            base.iter()
                .copied()
                .chain(["--issuer", "https://telehealth.example.vn"]),
        )
        .expect("with the issuer");
        assert!(matches!(
            ok.command,
            AccountsCommand::AddOperator { ref issuer, .. } if issuer == "https://telehealth.example.vn"
        ));
    }
}
