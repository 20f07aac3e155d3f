//! The authorization matrix: every `/api/v1` route and a reviewed plugin's
//! route, called by every kind of principal, each cell asserted allow or
//! deny. The expected policy is the table of `docs/authorization.md`; a test
//! below keeps the two identical.
//!
//! "Allow" is any status but 401 and 403 (the fixtures are built so that
//! every allowed cell actually succeeds with a 2xx, which is checked too).
//! "Deny" is 401 without a token, 403 with one, or 404 on the rows marked
//! `hides` (the code answers as if the object did not exist).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use tempfile::TempDir;
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::demo::{REFERENCE_VENDOR, publish_reference_plugins};
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::registry::Decision;
use vtelehealth_runtime::governance::signing::{self, SigningKey};
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_runtime::imaging::NewShare;
use vtelehealth_runtime::records::{Actor, BHYT_SYSTEM};
use vtelehealth_runtime::{Runtime, RuntimeOptions};
use vtelehealth_tests::{TestServer, component, plugin_dir, repo_root};

/// The kinds of caller, in the matrix's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    NoToken,
    Citizen,
    PractitionerA,
    PractitionerB,
    AdminA,
    AdminB,
    Vendor,
    OtherVendor,
    Reviewer,
    Operator,
    ServiceA,
    Assessor,
    OtherAssessor,
}

use Who::*;

const WHO: [Who; 13] = [
    NoToken,
    Citizen,
    PractitionerA,
    PractitionerB,
    AdminA,
    AdminB,
    Vendor,
    OtherVendor,
    Reviewer,
    Operator,
    ServiceA,
    Assessor,
    OtherAssessor,
];

impl Who {
    /// Column header, as in `docs/authorization.md`.
    fn label(self) -> &'static str {
        match self {
            NoToken => "no token",
            Citizen => "citizen",
            PractitionerA => "pract. A",
            PractitionerB => "pract. B",
            AdminA => "admin A",
            AdminB => "admin B",
            Vendor => "vendor",
            OtherVendor => "vendor 2",
            Reviewer => "reviewer",
            Operator => "operator",
            ServiceA => "service A",
            Assessor => "assessor",
            OtherAssessor => "assessor 2",
        }
    }
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    A,
    D,
}

use Cell::{A, D};

impl Cell {
    fn letter(self) -> &'static str {
        match self {
            A => "A",
            D => "D",
        }
    }
}

/// What a row exercises; its request is built per cell by [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Me,
    Plugins,
    Hospitals,
    PlatformKeys,
    VendorKeys,
    ListVersions,
    GetApproved,
    GetSubmitted,
    Submit,
    Approve,
    Reject,
    Revoke,
    Rollout,
    ListActivations,
    Activate,
    Deactivate,
    Audit,
    AuditVerify,
    AuditCheckpoints,
    AuditCheckpointNow,
    RotateKeys,
    PluginCall,
    SigningKey,
    CreateShare,
    ListShares,
    ReadShare,
    RevokeShare,
    GrantConsent,
    ListConsents,
    RevokeConsent,
    RecordAccess,
    RequestConsultation,
    ListConsultations,
    AcceptConsultation,
    DeclineConsultation,
    EndConsultation,
    CreateRoom,
    InviteToRoom,
    RoomToken,
    RoomParticipants,
    RoomChat,
    AdmitToRoom,
    RemoveFromRoom,
    EndRoom,
    VnpayIpn,
    VnpayReturn,
    Reconciliation,
    VersionChanges,
    PluginUsage,
    VendorActivations,
    PluginFrame,
    MyPayments,
    MyRecords,
    MyNotifications,
    Network,
    StaffList,
    StaffCreate,
    StaffImport,
    StaffUpdate,
    StaffSuspend,
    StaffReactivate,
    StaffInvitation,
    ClientList,
    ClientCreate,
    ClientRotate,
    ClientRevoke,
    VendorUsers,
    VendorInvite,
    Practitioners,
    Specialties,
    NetFacilities,
    NetFacility,
    NetImport,
    NetCreateFacility,
    NetUpdateFacility,
    NetSuspendFacility,
    NetReactivateFacility,
    NetSummary,
    NetVendors,
    NetRegisterVendor,
    NetSuspendVendor,
    NetReactivateVendor,
}

struct Row {
    op: Op,
    /// Method and path as shown in the matrix and the docs.
    route: &'static str,
    /// A 404 on this row is a deliberate denial (existence is hidden).
    hides: bool,
    expect: [Cell; 13],
}

const fn row(op: Op, route: &'static str, hides: bool, expect: [Cell; 13]) -> Row {
    Row {
        op,
        route,
        hides,
        expect,
    }
}

/// The expected policy. Columns: no token, citizen, practitioner of A,
/// practitioner of B, admin of A, admin of B, vendor user of the plugin's
/// vendor, vendor user of another vendor, reviewer, operator, service
/// client of A, the assessor a share names, another assessor.
/// Hospital-scoped paths are hospital A's.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                                                        none cit pA pB aA aB ven v2 rev op svcA as as2
    row(Op::Me,              "GET /api/v1/me",                                   false, [D, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::Plugins,         "GET /api/v1/plugins",                              false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::Hospitals,       "GET /api/v1/hospitals",                            false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::PlatformKeys,    "GET /api/v1/platform/keys",                        false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::VendorKeys,      "POST /api/v1/vendor/keys",                         false, [D, D, D, D, D, D, A, A, D, D, D, D, D]),
    row(Op::ListVersions,    "GET /api/v1/plugin-versions",                      false, [D, D, A, A, A, A, A, A, A, A, D, D, D]),
    row(Op::GetApproved,     "GET /api/v1/plugin-versions/{approved}",           true,  [D, D, A, A, A, A, A, D, A, A, D, D, D]),
    row(Op::GetSubmitted,    "GET /api/v1/plugin-versions/{submitted}",          true,  [D, D, D, D, D, D, A, D, A, A, D, D, D]),
    row(Op::Submit,          "POST /api/v1/plugin-versions",                     false, [D, D, D, D, D, D, A, D, D, D, D, D, D]),
    row(Op::Approve,         "POST /api/v1/plugin-versions/{submitted}/approve", false, [D, D, D, D, D, D, D, D, A, D, D, D, D]),
    row(Op::Reject,          "POST /api/v1/plugin-versions/{submitted}/reject",  false, [D, D, D, D, D, D, D, D, A, D, D, D, D]),
    row(Op::Revoke,          "POST /api/v1/plugin-versions/{approved}/revoke",   false, [D, D, D, D, D, D, D, D, A, D, D, D, D]),
    row(Op::Rollout,         "POST /api/v1/plugin-versions/{approved}/rollout",  false, [D, D, D, D, D, D, D, D, A, D, D, D, D]),
    row(Op::ListActivations, "GET /api/v1/hospitals/A/activations",              false, [D, D, A, D, A, D, D, D, A, A, D, D, D]),
    row(Op::Activate,        "PUT /api/v1/hospitals/A/activations/{plugin}",     false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::Deactivate,      "DELETE /api/v1/hospitals/A/activations/{plugin}",  false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::Audit,           "GET /api/v1/audit",                                false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::AuditVerify,     "GET /api/v1/audit/verify",                         false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::AuditCheckpoints, "GET /api/v1/audit/checkpoints",                   false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::AuditCheckpointNow, "POST /api/v1/audit/checkpoints",                false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::RotateKeys,      "POST /api/v1/identity/keys/rotate",                false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::PluginCall,      "GET /hospitals/A/plugins/hello/",                  false, [D, A, A, D, A, D, D, D, D, D, A, D, D]),
    row(Op::SigningKey,      "GET /api/v1/hospitals/A/signing-key",              false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::CreateShare,     "POST /api/v1/hospitals/A/imaging-shares",          false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::ListShares,      "GET /api/v1/imaging-shares",                       false, [D, D, D, D, D, D, D, D, D, D, D, A, A]),
    row(Op::ReadShare,       "GET /api/v1/imaging-shares/{share}",               false, [D, D, A, D, A, D, D, D, D, D, D, A, D]),
    row(Op::RevokeShare,     "DELETE /api/v1/hospitals/A/imaging-shares/{share}", false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::GrantConsent,    "POST /api/v1/me/consents",                         false, [D, A, D, D, D, D, D, D, D, D, D, D, D]),
    row(Op::ListConsents,    "GET /api/v1/me/consents",                          false, [D, A, D, D, D, D, D, D, D, D, D, D, D]),
    row(Op::RevokeConsent,   "DELETE /api/v1/me/consents/{consent}",             false, [D, A, D, D, D, D, D, D, D, D, D, D, D]),
    row(Op::RecordAccess,    "GET /api/v1/me/record-access",                     false, [D, A, D, D, D, D, D, D, D, D, D, D, D]),
    row(Op::RequestConsultation, "POST /api/v1/consultations",                   false, [D, D, A, A, D, D, D, D, D, D, D, D, D]),
    row(Op::ListConsultations, "GET /api/v1/consultations",                      false, [D, D, A, A, A, A, D, D, D, D, D, D, D]),
    row(Op::AcceptConsultation, "POST /api/v1/consultations/{consultation}/accept", false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::DeclineConsultation, "POST /api/v1/consultations/{consultation}/decline", false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::EndConsultation, "POST /api/v1/consultations/{consultation}/end",    false, [D, D, A, A, A, A, D, D, D, D, D, D, D]),
    row(Op::CreateRoom,      "POST /api/v1/video/rooms",                         false, [D, D, A, A, A, A, D, D, D, D, D, D, D]),
    row(Op::InviteToRoom,    "POST /api/v1/video/rooms/{room}/invitations",      false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::RoomToken,       "POST /api/v1/video/rooms/{room}/token",            false, [D, D, A, A, D, D, D, D, D, D, D, D, D]),
    row(Op::RoomParticipants, "GET /api/v1/video/rooms/{room}/participants",     false, [D, D, A, A, A, D, D, D, D, D, D, D, D]),
    row(Op::RoomChat,        "GET /api/v1/video/rooms/{room}/chat",              false, [D, D, A, A, A, D, D, D, D, D, D, D, D]),
    row(Op::AdmitToRoom,     "POST /api/v1/video/rooms/{room}/participants/{participant}/admit", false, [D, D, A, D, D, D, D, D, D, D, D, D, D]),
    row(Op::RemoveFromRoom,  "POST /api/v1/video/rooms/{room}/participants/{participant}/remove", false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::EndRoom,         "POST /api/v1/video/rooms/{room}/end",              false, [D, D, A, D, A, D, D, D, D, D, D, D, D]),
    // The gateway's calls: authenticated by their HMAC signature, not a token.
    row(Op::VnpayIpn,        "GET /api/v1/payments/vnpay/ipn",                   false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::VnpayReturn,     "GET /api/v1/payments/vnpay/return",                false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::Reconciliation,  "GET /api/v1/payments/reconciliation?merchant=hospital:A", false, [D, D, D, D, A, D, D, D, D, A, D, D, D]),
    // The consoles' read APIs (docs/consoles.md).
    row(Op::VersionChanges,  "GET /api/v1/plugin-versions/{approved}/changes",   true,  [D, D, A, A, A, A, A, D, A, A, D, D, D]),
    row(Op::PluginUsage,     "GET /api/v1/hospitals/A/plugin-usage",             false, [D, D, D, D, A, D, D, D, A, A, D, D, D]),
    row(Op::VendorActivations, "GET /api/v1/vendor/activations",                 false, [D, D, D, D, D, D, A, A, D, D, D, D, D]),
    row(Op::PluginFrame,     "POST /api/v1/console/plugin-frames",               false, [D, A, A, D, A, D, D, D, D, D, D, D, D]),
    row(Op::MyPayments,      "GET /api/v1/me/payments",                          false, [D, A, D, D, D, D, D, D, D, D, D, D, D]),
    row(Op::MyRecords,       "GET /api/v1/me/records",                           false, [D, A, D, D, D, D, D, D, D, D, D, D, D]),
    row(Op::MyNotifications, "GET /api/v1/me/notifications",                     false, [D, A, A, A, A, A, A, A, A, A, A, A, A]),
    row(Op::Network,         "GET /api/v1/network",                              false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::NetFacilities,   "GET /api/v1/network/facilities",                   false, [D, D, D, D, A, A, D, D, A, A, D, D, D]),
    row(Op::NetFacility,     "GET /api/v1/network/facilities/{code}",            false, [D, D, D, D, A, A, D, D, A, A, D, D, D]),
    row(Op::NetImport,       "POST /api/v1/network/facilities/import?dry_run=true", false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetCreateFacility, "POST /api/v1/network/facilities",                false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetUpdateFacility, "PUT /api/v1/network/facilities/{code}",          false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetSuspendFacility, "POST /api/v1/network/facilities/{code}/suspend", false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetReactivateFacility, "POST /api/v1/network/facilities/{code}/reactivate", false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetSummary,      "GET /api/v1/network/summary",                      false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::NetVendors,      "GET /api/v1/network/vendors",                      false, [D, D, D, D, D, D, D, D, A, A, D, D, D]),
    row(Op::NetRegisterVendor, "POST /api/v1/network/vendors",                   false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetSuspendVendor, "POST /api/v1/network/vendors/{id}/suspend",       false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    row(Op::NetReactivateVendor, "POST /api/v1/network/vendors/{id}/reactivate", false, [D, D, D, D, D, D, D, D, D, A, D, D, D]),
    // Staff, service clients, vendors' users, the directory (docs/identity.md).
    row(Op::StaffList,       "GET /api/v1/hospitals/A/staff",                    false, [D, D, D, D, A, D, D, D, D, A, D, D, D]),
    row(Op::StaffCreate,     "POST /api/v1/hospitals/A/staff",                   false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::StaffImport,     "POST /api/v1/hospitals/A/staff/import?dry_run=true", false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::StaffUpdate,     "PATCH /api/v1/hospitals/A/staff/{user}",           false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::StaffSuspend,    "POST /api/v1/hospitals/A/staff/{user}/suspend",    false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::StaffReactivate, "POST /api/v1/hospitals/A/staff/{user}/reactivate", false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::StaffInvitation, "POST /api/v1/hospitals/A/staff/{user}/invitation", false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::ClientList,      "GET /api/v1/hospitals/A/clients",                  false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::ClientCreate,    "POST /api/v1/hospitals/A/clients",                 false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::ClientRotate,    "POST /api/v1/hospitals/A/clients/{client}/rotate", false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::ClientRevoke,    "POST /api/v1/hospitals/A/clients/{client}/revoke", false, [D, D, D, D, A, D, D, D, D, D, D, D, D]),
    row(Op::VendorUsers,     "GET /api/v1/vendors/{vendor}/users",               false, [D, D, D, D, D, D, A, D, D, A, D, D, D]),
    row(Op::VendorInvite,    "POST /api/v1/vendors/{vendor}/users",              false, [D, D, D, D, D, D, A, D, D, D, D, D, D]),
    row(Op::Practitioners,   "GET /api/v1/practitioners",                        false, [D, A, A, A, A, A, D, D, D, A, D, D, D]),
    row(Op::Specialties,     "GET /api/v1/specialties",                          false, [A, A, A, A, A, A, A, A, A, A, A, A, A]),
];

const HOSPITAL_A: &str = "bv-a";

/// A directory user: kind, username, role, hospital, vendor.
type UserSeed = (
    Who,
    &'static str,
    Role,
    Option<&'static str>,
    Option<&'static str>,
);
const OTHER_VENDOR: &str = "globex";

/// The server and everything the cells need.
struct Fixture {
    server: TestServer,
    tokens: HashMap<Who, String>,
    /// Registered signing keys of the two vendors.
    vendor_key: SigningKey,
    other_vendor_key: SigningKey,
    /// hello's manifest (as the reference vendor's) and component.
    hello: (String, Vec<u8>),
    /// hello 0.1.0, approved and active at both hospitals.
    hello_approved: String,
    /// visit-counter, approved and active at both hospitals: the plugin
    /// the activation rows manage.
    counter_approved: String,
    /// A hello version submitted and never decided.
    hello_submitted: String,
    versions: AtomicU32,
    /// The assessor column's subject: the shares are made for them.
    assessor: String,
    /// A DiagnosticReport and its ImagingStudy in A's records.
    report: String,
    study: String,
    /// A share of A's for the assessor.
    share: String,
    /// The subject of each directory user.
    subjects: HashMap<Who, String>,
}

impl Fixture {
    async fn new() -> Self {
        let data = TempDir::new().expect("temp dir");
        let options = RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("authz.db").display()),
            // No development plugins: only reviewed ones run.
            plugin_dir: None,
            // The national rollout includes e-pharmacy, which takes payments.
            payment_sandbox: true,
            cache_dir: Some(data.path().join("cache")),
            identity: IdentityOptions {
                password_iterations: 1_000,
                ..IdentityOptions::default()
            },
            ..RuntimeOptions::default()
        };
        let server = TestServer::start_with(options, data).await;
        let rt = server.runtime.clone();

        // The reference plugins through review, active at both hospitals.
        let published = publish_reference_plugins(&rt, &plugin_dir())
            .await
            .expect("reference plugins published");
        assert!(published.iter().any(|p| p == "hello"), "{published:?}");
        assert!(
            published.iter().any(|p| p == "visit-counter"),
            "{published:?}"
        );
        let active = |plugin: &'static str| {
            let rt = rt.clone();
            async move {
                rt.governance
                    .registry
                    .activation(HOSPITAL_A, plugin)
                    .await
                    .expect("activation")
                    .unwrap_or_else(|| panic!("{plugin} active at {HOSPITAL_A}"))
                    .version_id
            }
        };
        let hello_approved = active("hello").await;
        let counter_approved = active("visit-counter").await;

        // Signing keys for the reference vendor and a second vendor.
        let id = &rt.identity;
        id.create_vendor(OTHER_VENDOR, "Globex Health")
            .await
            .expect("vendor");
        let vendor_key = SigningKey::generate().expect("key");
        let other_vendor_key = SigningKey::generate().expect("key");
        for (vendor, key) in [
            (REFERENCE_VENDOR.0, &vendor_key),
            (OTHER_VENDOR, &other_vendor_key),
        ] {
            rt.governance
                .registry
                .add_vendor_key("test:seed", vendor, &key.key_id(), &key.public_key())
                .await
                .expect("vendor key");
        }

        // One principal of each kind.
        let mut tokens = HashMap::new();
        let mut subjects = HashMap::new();
        let users: [UserSeed; 11] = [
            (Citizen, "001090000123", Role::Citizen, None, None),
            (
                PractitionerA,
                "bs.a",
                Role::Practitioner,
                Some("bv-a"),
                None,
            ),
            (
                PractitionerB,
                "bs.b",
                Role::Practitioner,
                Some("bv-b"),
                None,
            ),
            (AdminA, "admin.a", Role::HospitalAdmin, Some("bv-a"), None),
            (AdminB, "admin.b", Role::HospitalAdmin, Some("bv-b"), None),
            (
                Vendor,
                "dev.vth",
                Role::VendorUser,
                None,
                Some(REFERENCE_VENDOR.0),
            ),
            (
                OtherVendor,
                "dev.globex",
                Role::VendorUser,
                None,
                Some(OTHER_VENDOR),
            ),
            (Reviewer, "reviewer", Role::Reviewer, None, None),
            (Operator, "operator", Role::Operator, None, None),
            (Assessor, "assessor", Role::Assessor, None, None),
            (OtherAssessor, "assessor.2", Role::Assessor, None, None),
        ];
        let mut assessor = String::new();
        for (who, username, role, hospital, vendor) in users {
            let mut u = NewUser::new(username, username, role, "password-1");
            u.hospital_id = hospital.map(Into::into);
            u.vendor_id = vendor.map(Into::into);
            if role == Role::Citizen {
                u.national_id = Some("001090000123".into());
                u.health_id = Some("0101111111".into());
            }
            let user = id.create_user(u).await.expect("user");
            tokens.insert(who, id.token_for(&user).expect("token"));
            subjects.insert(who, user.id.clone());
            if who == Assessor {
                assessor = user.id.clone();
            }
        }
        id.register_service_client("his-bv-a", "HIS A", HOSPITAL_A, "a-long-service-secret")
            .await
            .expect("service client");
        let client = id
            .client("his-bv-a")
            .await
            .expect("client")
            .expect("registered");
        let service = id.tokens_for_client(&client, "openid").expect("token");
        tokens.insert(ServiceA, service.access_token);
        // The reference vendor's user administers it (invites colleagues).
        id.set_vendor_admin(&subjects[&Vendor], true)
            .await
            .expect("vendor admin");

        let (wasm, toml) = component(&plugin_dir(), "hello");
        let manifest = std::fs::read_to_string(toml).expect("manifest");
        assert!(manifest.contains("version = \"0.1.0\""), "{manifest}");
        assert!(
            manifest.contains(&format!("vendor = \"{}\"", REFERENCE_VENDOR.0)),
            "{manifest}"
        );
        let hello = (manifest, std::fs::read(wasm).expect("component"));

        let mut fx = Self {
            server,
            tokens,
            vendor_key,
            other_vendor_key,
            hello,
            hello_approved,
            counter_approved,
            hello_submitted: String::new(),
            versions: AtomicU32::new(1),
            assessor,
            report: String::new(),
            study: String::new(),
            share: String::new(),
            subjects,
        };
        fx.hello_submitted = fx.submitted().await;
        (fx.report, fx.study) = imaging_records(&fx.server.runtime).await;
        fx.share = fx.new_share().await;
        fx
    }

    /// A fresh share of A's imaging records for the assessor.
    async fn new_share(&self) -> String {
        let rt = &self.server.runtime;
        let hospital = rt.hospitals.get(HOSPITAL_A).expect("hospital A");
        rt.imaging
            .create(
                &seed_actor(),
                &hospital,
                &format!("{}/fhir/R4", self.server.base),
                NewShare {
                    claim_id: "HS-AUTHZ".into(),
                    assessor: self.assessor.clone(),
                    diagnostic_report: self.report.clone(),
                    imaging_study: self.study.clone(),
                    dicomweb_base_url: Some("https://pacs.bv-a.example/dicomweb".into()),
                    expires_in_days: 1,
                },
            )
            .await
            .expect("share")
            .id
    }

    /// A new hello version, signed and naming `vendor`.
    fn bundle(&self, vendor: &str) -> Bundle {
        let n = self.versions.fetch_add(1, Ordering::Relaxed);
        let manifest = self
            .hello
            .0
            .replace("version = \"0.1.0\"", &format!("version = \"0.2.{n}\""))
            .replace(
                &format!("vendor = \"{}\"", REFERENCE_VENDOR.0),
                &format!("vendor = \"{vendor}\""),
            );
        let mut bundle = Bundle::new(manifest, self.hello.1.clone());
        let key = if vendor == OTHER_VENDOR {
            &self.other_vendor_key
        } else {
            &self.vendor_key
        };
        key.sign(&mut bundle);
        bundle
    }

    /// A fresh submitted hello version of the reference vendor.
    async fn submitted(&self) -> String {
        let rt = &self.server.runtime;
        match rt
            .governance
            .submit(
                "test:seed",
                REFERENCE_VENDOR.0,
                self.bundle(REFERENCE_VENDOR.0),
            )
            .await
        {
            Ok((version, _)) => version.id,
            Err(e) => panic!("seed submission: {e:?}"),
        }
    }

    /// A fresh approved (and nowhere active) hello version.
    async fn approved(&self) -> String {
        let id = self.submitted().await;
        let gov = &self.server.runtime.governance;
        let requested = gov.version(&id).await.expect("version").requested;
        gov.decide(
            "test:seed",
            &id,
            Decision::Approve {
                granted: requested,
                note: String::new(),
            },
        )
        .await
        .expect("approved");
        id
    }

    async fn send(&self, method: &str, path: &str, who: Who, body: Option<Value>) -> (u16, Value) {
        let mut req = self.server.client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.server.base),
        );
        if let Some(token) = self.tokens.get(&who) {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The request of one cell, with fresh objects where the call changes
    /// state, so that no cell depends on another.
    async fn prepare(&self, op: Op, who: Who) -> (&'static str, String, Option<Value>) {
        let versions = "/api/v1/plugin-versions";
        let activations = format!("/api/v1/hospitals/{HOSPITAL_A}/activations");
        match op {
            Op::Me => ("GET", "/api/v1/me".into(), None),
            Op::Plugins => ("GET", "/api/v1/plugins".into(), None),
            Op::Hospitals => ("GET", "/api/v1/hospitals".into(), None),
            Op::PlatformKeys => ("GET", "/api/v1/platform/keys".into(), None),
            Op::VendorKeys => {
                let key = SigningKey::generate().expect("key");
                let public_key = signing::encode_public_key(&key.public_key());
                (
                    "POST",
                    "/api/v1/vendor/keys".into(),
                    Some(json!({ "public_key": public_key })),
                )
            }
            Op::ListVersions => ("GET", versions.into(), None),
            Op::GetApproved => ("GET", format!("{versions}/{}", self.hello_approved), None),
            Op::GetSubmitted => ("GET", format!("{versions}/{}", self.hello_submitted), None),
            Op::Submit => {
                // Each vendor submits a new version of hello under its own
                // name and key; hello belongs to the reference vendor.
                let vendor = if who == OtherVendor {
                    OTHER_VENDOR
                } else {
                    REFERENCE_VENDOR.0
                };
                let bundle: Value =
                    serde_json::from_slice(&self.bundle(vendor).to_json()).expect("bundle JSON");
                ("POST", versions.into(), Some(bundle))
            }
            Op::Approve => (
                "POST",
                format!("{versions}/{}/approve", self.submitted().await),
                Some(json!({ "note": "authorization matrix" })),
            ),
            Op::Reject => (
                "POST",
                format!("{versions}/{}/reject", self.submitted().await),
                Some(json!({ "reason": "authorization matrix" })),
            ),
            Op::Revoke => (
                "POST",
                format!("{versions}/{}/revoke", self.approved().await),
                Some(json!({ "reason": "authorization matrix" })),
            ),
            // To hospital B's province only: visit-counter is already active
            // there, so the rollout re-activates the same version.
            Op::Rollout => (
                "POST",
                format!("{versions}/{}/rollout", self.counter_approved),
                Some(json!({ "province": "Thái Bình" })),
            ),
            Op::ListActivations => ("GET", activations, None),
            Op::Activate => (
                "PUT",
                format!("{activations}/visit-counter"),
                Some(json!({ "version_id": self.counter_approved })),
            ),
            Op::Deactivate => {
                let active = self
                    .server
                    .runtime
                    .governance
                    .registry
                    .activation(HOSPITAL_A, "visit-counter")
                    .await
                    .expect("activation");
                if active.is_none() {
                    let (status, body) = self
                        .send(
                            "PUT",
                            &format!("{activations}/visit-counter"),
                            AdminA,
                            Some(json!({ "version_id": self.counter_approved })),
                        )
                        .await;
                    assert_eq!(status, 200, "re-activating visit-counter: {body}");
                }
                ("DELETE", format!("{activations}/visit-counter"), None)
            }
            Op::Audit => ("GET", "/api/v1/audit?limit=5".into(), None),
            Op::AuditVerify => ("GET", "/api/v1/audit/verify".into(), None),
            Op::AuditCheckpoints => ("GET", "/api/v1/audit/checkpoints".into(), None),
            Op::AuditCheckpointNow => ("POST", "/api/v1/audit/checkpoints".into(), None),
            Op::RotateKeys => ("POST", "/api/v1/identity/keys/rotate".into(), None),
            Op::PluginCall => (
                "GET",
                format!("/hospitals/{HOSPITAL_A}/plugins/hello/"),
                None,
            ),
            Op::SigningKey => (
                "GET",
                format!("/api/v1/hospitals/{HOSPITAL_A}/signing-key"),
                None,
            ),
            Op::CreateShare => (
                "POST",
                format!("/api/v1/hospitals/{HOSPITAL_A}/imaging-shares"),
                Some(json!({
                    "claim_id": "HS-AUTHZ", "assessor": self.assessor,
                    "diagnostic_report": self.report, "imaging_study": self.study,
                    "dicomweb_base_url": "https://pacs.bv-a.example/dicomweb"
                })),
            ),
            Op::ListShares => ("GET", "/api/v1/imaging-shares".into(), None),
            Op::ReadShare => (
                "GET",
                format!("/api/v1/imaging-shares/{}", self.share),
                None,
            ),
            Op::RevokeShare => (
                "DELETE",
                format!(
                    "/api/v1/hospitals/{HOSPITAL_A}/imaging-shares/{}",
                    self.new_share().await
                ),
                None,
            ),
            Op::GrantConsent => (
                "POST",
                "/api/v1/me/consents".into(),
                Some(json!({ "grantee_hospital": "bv-b", "expires_in_days": 1 })),
            ),
            Op::ListConsents => ("GET", "/api/v1/me/consents".into(), None),
            Op::RevokeConsent => {
                let (status, consent) = self
                    .send(
                        "POST",
                        "/api/v1/me/consents",
                        Citizen,
                        Some(json!({ "grantee_hospital": "bv-b" })),
                    )
                    .await;
                assert_eq!(status, 201, "consent: {consent}");
                let id = consent["id"].as_str().unwrap_or_default();
                ("DELETE", format!("/api/v1/me/consents/{id}"), None)
            }
            Op::RecordAccess => ("GET", "/api/v1/me/record-access".into(), None),
            Op::RequestConsultation => {
                // Hospital C hosts, so both A's and B's practitioners may ask it.
                let rt = &self.server.runtime;
                rt.hospitals
                    .upsert(Hospital {
                        id: "bv-c".into(),
                        name: "Bệnh viện C".into(),
                        tier: Tier::Central,
                        province: "Hà Nội".into(),
                        ..Default::default()
                    })
                    .await
                    .expect("hospital C");
                (
                    "POST",
                    "/api/v1/consultations".into(),
                    Some(
                        json!({ "host_hospital": "bv-c", "patient": { "health_id": "0101111111" }, "reason": "authz" }),
                    ),
                )
            }
            Op::ListConsultations => ("GET", "/api/v1/consultations".into(), None),
            Op::AcceptConsultation | Op::DeclineConsultation | Op::EndConsultation => {
                let (status, c) = self
                    .send(
                        "POST",
                        "/api/v1/consultations",
                        PractitionerB,
                        Some(json!({ "host_hospital": HOSPITAL_A, "patient": { "health_id": "0101111111" }, "reason": "authz" })),
                    )
                    .await;
                assert_eq!(status, 201, "consultation: {c}");
                let id = c["id"].as_str().unwrap_or_default();
                let action = match op {
                    Op::AcceptConsultation => "accept",
                    Op::DeclineConsultation => "decline",
                    _ => "end",
                };
                ("POST", format!("/api/v1/consultations/{id}/{action}"), None)
            }
            Op::CreateRoom => (
                "POST",
                "/api/v1/video/rooms".into(),
                Some(json!({ "purpose": "authz", "max_participants": 4 })),
            ),
            Op::InviteToRoom => {
                let (room, _) = self.video_room().await;
                let citizen = self.subjects.get(&Citizen).cloned().unwrap_or_default();
                (
                    "POST",
                    format!("/api/v1/video/rooms/{room}/invitations"),
                    Some(json!({ "subject": citizen, "role": "observer" })),
                )
            }
            Op::RoomToken => {
                let (room, _) = self.video_room().await;
                ("POST", format!("/api/v1/video/rooms/{room}/token"), None)
            }
            Op::RoomParticipants => {
                let (room, _) = self.video_room().await;
                (
                    "GET",
                    format!("/api/v1/video/rooms/{room}/participants"),
                    None,
                )
            }
            Op::RoomChat => {
                let (room, _) = self.video_room().await;
                ("GET", format!("/api/v1/video/rooms/{room}/chat"), None)
            }
            Op::AdmitToRoom | Op::RemoveFromRoom => {
                let (room, participant) = self.video_room().await;
                let action = if op == Op::AdmitToRoom {
                    "admit"
                } else {
                    "remove"
                };
                (
                    "POST",
                    format!("/api/v1/video/rooms/{room}/participants/{participant}/{action}"),
                    None,
                )
            }
            Op::EndRoom => {
                let (room, _) = self.video_room().await;
                ("POST", format!("/api/v1/video/rooms/{room}/end"), None)
            }
            // Unsigned: answered in the protocol (RspCode 01/97), never settled.
            Op::VnpayIpn => (
                "GET",
                "/api/v1/payments/vnpay/ipn?vnp_TxnRef=none&vnp_Amount=100".into(),
                None,
            ),
            Op::VnpayReturn => (
                "GET",
                "/api/v1/payments/vnpay/return?vnp_TxnRef=none".into(),
                None,
            ),
            Op::Reconciliation => (
                "GET",
                format!(
                    "/api/v1/payments/reconciliation?merchant=hospital:{HOSPITAL_A}&day=2026-11-24"
                ),
                None,
            ),
            Op::VersionChanges => (
                "GET",
                format!("{versions}/{}/changes", self.hello_approved),
                None,
            ),
            Op::PluginUsage => (
                "GET",
                format!("/api/v1/hospitals/{HOSPITAL_A}/plugin-usage"),
                None,
            ),
            Op::VendorActivations => ("GET", "/api/v1/vendor/activations".into(), None),
            Op::PluginFrame => (
                "POST",
                "/api/v1/console/plugin-frames".into(),
                Some(json!({ "hospital": HOSPITAL_A, "plugin": "hello" })),
            ),
            Op::MyPayments => ("GET", "/api/v1/me/payments".into(), None),
            Op::MyRecords => ("GET", "/api/v1/me/records".into(), None),
            Op::MyNotifications => ("GET", "/api/v1/me/notifications".into(), None),
            Op::Network => ("GET", "/api/v1/network".into(), None),
            Op::StaffList => ("GET", format!("/api/v1/hospitals/{HOSPITAL_A}/staff"), None),
            Op::StaffCreate => (
                "POST",
                format!("/api/v1/hospitals/{HOSPITAL_A}/staff"),
                Some(staff_json(STAFF_NEXT.fetch_add(1, Ordering::Relaxed))),
            ),
            Op::StaffImport => {
                let n = STAFF_NEXT.fetch_add(1, Ordering::Relaxed);
                let csv = format!(
                    "username,display_name,national_id,licence_number,specialties,roles,email\n\
                     staff.{n},BS. Nhập {n},001091{n:06},{n:06}/BYT-GPHN,cardiology,practitioner,\n"
                );
                (
                    "POST",
                    format!("/api/v1/hospitals/{HOSPITAL_A}/staff/import?dry_run=true"),
                    Some(json!({ "csv": csv })),
                )
            }
            Op::StaffUpdate => (
                "PATCH",
                format!(
                    "/api/v1/hospitals/{HOSPITAL_A}/staff/{}",
                    self.staff_member().await
                ),
                Some(json!({ "specialties": ["pediatrics"] })),
            ),
            Op::StaffSuspend | Op::StaffReactivate | Op::StaffInvitation => {
                let verb = match op {
                    Op::StaffSuspend => "suspend",
                    Op::StaffReactivate => "reactivate",
                    _ => "invitation",
                };
                (
                    "POST",
                    format!(
                        "/api/v1/hospitals/{HOSPITAL_A}/staff/{}/{verb}",
                        self.staff_member().await
                    ),
                    None,
                )
            }
            Op::ClientList => (
                "GET",
                format!("/api/v1/hospitals/{HOSPITAL_A}/clients"),
                None,
            ),
            Op::ClientCreate => (
                "POST",
                format!("/api/v1/hospitals/{HOSPITAL_A}/clients"),
                Some(json!({ "name": "LIS Bệnh viện A", "kind": "lis", "scope": "service" })),
            ),
            Op::ClientRotate | Op::ClientRevoke => {
                let issued = self
                    .server
                    .runtime
                    .identity
                    .create_hospital_client(HOSPITAL_A, "PACS A", "pacs", "", "test:seed")
                    .await
                    .expect("client");
                let verb = if op == Op::ClientRotate {
                    "rotate"
                } else {
                    "revoke"
                };
                (
                    "POST",
                    format!(
                        "/api/v1/hospitals/{HOSPITAL_A}/clients/{}/{verb}",
                        issued.client_id
                    ),
                    (op == Op::ClientRotate).then(|| json!({ "grace_secs": 60 })),
                )
            }
            Op::VendorUsers => (
                "GET",
                format!("/api/v1/vendors/{}/users", REFERENCE_VENDOR.0),
                None,
            ),
            Op::VendorInvite => {
                let n = STAFF_NEXT.fetch_add(1, Ordering::Relaxed);
                (
                    "POST",
                    format!("/api/v1/vendors/{}/users", REFERENCE_VENDOR.0),
                    Some(
                        json!({ "username": format!("dev.{n}"), "display_name": format!("Lập trình viên {n}"), "admin": false }),
                    ),
                )
            }
            Op::Practitioners => ("GET", "/api/v1/practitioners?q=bs".into(), None),
            Op::Specialties => ("GET", "/api/v1/specialties".into(), None),
            Op::NetFacilities => (
                "GET",
                "/api/v1/network/facilities?q=tr%E1%BA%A1m".into(),
                None,
            ),
            Op::NetFacility => {
                let code = net_facility(&self.server.runtime, Some(NET_FIXED)).await;
                ("GET", format!("/api/v1/network/facilities/{code}"), None)
            }
            Op::NetImport => (
                "POST",
                "/api/v1/network/facilities/import?dry_run=true".into(),
                Some(json!({ "csv": format!("{}\n{}", NET_HEADER, net_row("33990")) })),
            ),
            Op::NetCreateFacility => {
                let code = NET_NEXT.fetch_add(1, Ordering::Relaxed).to_string();
                (
                    "POST",
                    "/api/v1/network/facilities".into(),
                    Some(net_json(&code)),
                )
            }
            Op::NetUpdateFacility => {
                let code = net_facility(&self.server.runtime, Some(NET_FIXED)).await;
                (
                    "PUT",
                    format!("/api/v1/network/facilities/{code}"),
                    Some(net_json(&code)),
                )
            }
            Op::NetSuspendFacility => {
                let code = net_facility(&self.server.runtime, None).await;
                (
                    "POST",
                    format!("/api/v1/network/facilities/{code}/suspend"),
                    Some(json!({ "reason": "authorization matrix" })),
                )
            }
            Op::NetReactivateFacility => {
                let code = net_facility(&self.server.runtime, None).await;
                (
                    "POST",
                    format!("/api/v1/network/facilities/{code}/reactivate"),
                    None,
                )
            }
            Op::NetSummary => ("GET", "/api/v1/network/summary".into(), None),
            Op::NetVendors => ("GET", "/api/v1/network/vendors".into(), None),
            Op::NetRegisterVendor => {
                let n = NET_NEXT.fetch_add(1, Ordering::Relaxed);
                (
                    "POST",
                    "/api/v1/network/vendors".into(),
                    Some(net_vendor(n)),
                )
            }
            Op::NetSuspendVendor | Op::NetReactivateVendor => {
                let n = NET_NEXT.fetch_add(1, Ordering::Relaxed);
                let input = serde_json::from_value(net_vendor(n)).expect("vendor");
                let (v, _) = self
                    .server
                    .runtime
                    .network
                    .register_vendor(&input, "test:seed")
                    .await
                    .expect("vendor registered");
                let verb = if op == Op::NetSuspendVendor {
                    "suspend"
                } else {
                    "reactivate"
                };
                (
                    "POST",
                    format!("/api/v1/network/vendors/{}/{verb}", v.id),
                    Some(json!({ "reason": "authorization matrix" })),
                )
            }
        }
    }
}

// The staff rows' accounts: unique usernames, CCCDs and licences.
static STAFF_NEXT: AtomicU32 = AtomicU32::new(100);

fn staff_json(n: u32) -> Value {
    json!({
        "username": format!("staff.{n}"), "display_name": format!("BS. Thử {n}"),
        "national_id": format!("001091{n:06}"), "licence_number": format!("{n:06}/BYT-GPHN"),
        "specialties": ["cardiology"], "roles": ["practitioner"],
    })
}

impl Fixture {
    /// A fresh practitioner of A, invited by the seed: their id.
    async fn staff_member(&self) -> String {
        let n = STAFF_NEXT.fetch_add(1, Ordering::Relaxed);
        let new = serde_json::from_value(staff_json(n)).expect("staff");
        let (user, _) = self
            .server
            .runtime
            .identity
            .create_staff(
                HOSPITAL_A,
                &new,
                "test:seed",
                vtelehealth_runtime::identity::staff::Creation::Unaudited,
            )
            .await
            .expect("staff member");
        user.id
    }
}

// The network register's rows: facilities and vendors of their own, so
// no cell suspends anything another cell uses.
const NET_HEADER: &str =
    "facility_code,name,tier,level,province,commune,ownership,parent_code,status";
const NET_FIXED: &str = "33001";
static NET_NEXT: AtomicU32 = AtomicU32::new(40_000);

fn net_row(code: &str) -> String {
    format!("{code},Trạm Y tế {code},commune,primary,Hưng Yên,Xã {code},public,,")
}

fn net_json(code: &str) -> Value {
    json!({
        "facility_code": code, "name": format!("Trạm Y tế {code}"), "tier": "commune",
        "level": "primary", "province": "33", "commune": "Xã Tam Quang", "ownership": "public",
    })
}

fn net_vendor(n: u32) -> Value {
    json!({ "id": format!("vendor-{n}"), "name": format!("Công ty {n}"), "tax_code": format!("01{n:08}") })
}

/// A registered facility's code: `fixed` (created once), or a fresh one.
async fn net_facility(rt: &Runtime, fixed: Option<&str>) -> String {
    let code = fixed.map_or_else(
        || NET_NEXT.fetch_add(1, Ordering::Relaxed).to_string(),
        str::to_owned,
    );
    let row = serde_json::from_value(net_json(&code)).expect("row");
    rt.network
        .import_rows(vec![(0, row)], false, "test:seed", &mut |_, _| {})
        .await
        .expect("facility registered");
    code
}

impl Fixture {
    /// A fresh room hosted by A, chaired by A's practitioner, with B's
    /// practitioner invited: (room, B's participant id).
    async fn video_room(&self) -> (String, String) {
        use vtelehealth_runtime::video::ParticipantRole;
        use vtelehealth_runtime::video::rooms::{Invitee, NewRoom};
        let video = &self.server.runtime.video;
        let subject = |who: Who| self.subjects.get(&who).cloned().unwrap_or_default();
        let room = video
            .create_room(NewRoom {
                host_hospital: HOSPITAL_A.into(),
                requesting_hospital: Some("bv-b".into()),
                purpose: "authz".into(),
                max_participants: 10,
                scheduled_at: None,
                consultation_id: None,
                created_by: subject(PractitionerA),
                created_by_plugin: None,
            })
            .await
            .expect("room");
        let mut ids = Vec::new();
        for (who, role, hospital) in [
            (PractitionerA, ParticipantRole::Chair, HOSPITAL_A),
            (PractitionerB, ParticipantRole::Participant, "bv-b"),
        ] {
            let inv = video
                .invite(
                    &room,
                    &Invitee {
                        subject: subject(who),
                        display_name: who.label().into(),
                        hospital_id: Some(hospital.into()),
                        role,
                    },
                    "test:seed",
                )
                .await
                .expect("invited");
            ids.push(inv.id);
        }
        (room.id, ids.pop().unwrap_or_default())
    }
}

fn seed_actor() -> Actor {
    Actor::staff("test:seed", HOSPITAL_A)
}

/// A Patient with a health ID, a CT ImagingStudy and its DiagnosticReport
/// in A's records: (report, study).
async fn imaging_records(rt: &Runtime) -> (String, String) {
    let create = |resource: Value| async move {
        let Value::Object(r) = resource else {
            panic!("a resource is an object")
        };
        let ty = r["resourceType"]
            .as_str()
            .expect("type")
            .parse()
            .expect("known type");
        rt.records
            .create(&seed_actor(), ty, r)
            .await
            .expect("stored")
            .id
    };
    let patient = create(json!({
        "resourceType": "Patient",
        "identifier": [{ "system": BHYT_SYSTEM, "value": "0101234567" }]
    }))
    .await;
    let study = create(json!({
        "resourceType": "ImagingStudy", "status": "available",
        "subject": { "reference": format!("Patient/{patient}") },
        "series": [{ "uid": "1.2.3.4", "modality": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT" } }]
    }))
    .await;
    let report = create(json!({
        "resourceType": "DiagnosticReport", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "24627-2" }] },
        "subject": { "reference": format!("Patient/{patient}") },
        "imagingStudy": [{ "reference": format!("ImagingStudy/{study}") }]
    }))
    .await;
    (report, study)
}

/// What one cell's status means.
fn classify(status: u16, hides: bool) -> Cell {
    match status {
        401 | 403 => D,
        404 if hides => D,
        _ => A,
    }
}

/// The status a denial must have: 401 without a token, 403 (or 404 where
/// the row hides existence) with one.
fn proper_denial(who: Who, status: u16, hides: bool) -> bool {
    match who {
        NoToken => status == 401,
        _ => status == 403 || (hides && status == 404),
    }
}

fn render(observed: &[[(u16, Cell); 13]]) -> String {
    let width = MATRIX.iter().map(|r| r.route.len()).max().unwrap_or(0);
    let mut out = format!("{:width$}", "");
    for who in WHO {
        let _ = write!(out, " | {:>9}", who.label());
    }
    out.push('\n');
    for (row, cells) in MATRIX.iter().zip(observed) {
        let _ = write!(out, "{:width$}", row.route);
        for (i, (status, cell)) in cells.iter().enumerate() {
            let flag = if *cell == row.expect[i] { ' ' } else { '!' };
            let _ = write!(out, " | {}{flag} {status:>5}", cell.letter());
        }
        out.push('\n');
    }
    out.push_str("A allowed, D denied, with the status; ! differs from docs/authorization.md\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_principal() {
    let fx = Fixture::new().await;
    let mut observed = Vec::new();
    let mut problems = Vec::new();
    for row in MATRIX {
        let mut cells = [(0u16, D); 13];
        for (i, who) in WHO.into_iter().enumerate() {
            let (method, path, body) = fx.prepare(row.op, who).await;
            let (status, response) = fx.send(method, &path, who, body).await;
            let cell = classify(status, row.hides);
            cells[i] = (status, cell);
            let expected = row.expect[i];
            if cell != expected {
                problems.push(format!(
                    "{} as {}: expected {}, got {status} {response}",
                    row.route,
                    who.label(),
                    expected.letter()
                ));
            } else if cell == A && !(200..300).contains(&status) {
                problems.push(format!(
                    "{} as {}: allowed but did not succeed ({status} {response}); fix the fixture",
                    row.route,
                    who.label()
                ));
            } else if cell == D && !proper_denial(who, status, row.hides) {
                problems.push(format!(
                    "{} as {}: denied with {status}, expected {}",
                    row.route,
                    who.label(),
                    if who == NoToken { "401" } else { "403" }
                ));
            }
        }
        observed.push(cells);
    }
    let matrix = render(&observed);
    println!("{matrix}");
    assert!(
        problems.is_empty(),
        "authorization matrix differs from the policy:\n{}\n\n{matrix}",
        problems.join("\n")
    );
}

/// What each role sees of the same list: scoping is authorization too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_scoped_to_the_caller() {
    let fx = Fixture::new().await;
    let other = fx
        .server
        .runtime
        .governance
        .submit("test:seed", OTHER_VENDOR, {
            // A plugin of the other vendor: hello renamed.
            let mut b = fx.bundle(OTHER_VENDOR);
            b.manifest = b
                .manifest
                .replace("id = \"hello\"", "id = \"globex-hello\"");
            fx.other_vendor_key.sign(&mut b);
            b
        })
        .await
        .map(|(v, _)| v.id)
        .unwrap_or_else(|e| panic!("other vendor's submission: {e:?}"));
    let ids = |body: &Value| -> Vec<(String, String, String)> {
        body["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (s("id"), s("vendor"), s("state"))
            })
            .collect()
    };
    for who in [PractitionerA, AdminB] {
        // Hospital staff see the approved catalogue, whatever they ask.
        let (status, body) = fx
            .send("GET", "/api/v1/plugin-versions?state=submitted", who, None)
            .await;
        assert_eq!(status, 200, "{body}");
        let seen = ids(&body);
        assert!(
            !seen.is_empty() && seen.iter().all(|(_, _, s)| s == "approved"),
            "{who:?}: {seen:?}"
        );
    }
    let (_, body) = fx
        .send("GET", "/api/v1/plugin-versions", Vendor, None)
        .await;
    let seen = ids(&body);
    assert!(
        seen.iter().any(|(id, _, _)| *id == fx.hello_submitted),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, v, _)| v == REFERENCE_VENDOR.0),
        "{seen:?}"
    );
    let (_, body) = fx
        .send("GET", "/api/v1/plugin-versions", OtherVendor, None)
        .await;
    let seen = ids(&body);
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|(id, v, _)| v == OTHER_VENDOR && *id == other),
        "{seen:?}"
    );
    let (_, body) = fx
        .send("GET", "/api/v1/plugin-versions", Reviewer, None)
        .await;
    let seen = ids(&body);
    for id in [&fx.hello_submitted, &fx.hello_approved, &other] {
        assert!(
            seen.iter().any(|(s, _, _)| s == id),
            "reviewer sees {id}: {seen:?}"
        );
    }
    // A refused cross-hospital attempt is on the audit trail.
    let (status, _) = fx
        .send(
            "DELETE",
            "/api/v1/hospitals/bv-a/activations/visit-counter",
            AdminB,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = fx
        .send("GET", "/api/v1/audit?action=access.denied", Operator, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["target"] == "hospital:bv-a")),
        "{body}"
    );
}

/// `docs/authorization.md` shows exactly the matrix this file tests.
#[test]
fn the_documented_policy_is_the_tested_policy() {
    let doc = std::fs::read_to_string(repo_root().join("docs/authorization.md"))
        .expect("docs/authorization.md");
    let start = doc
        .find("<!-- matrix:start -->")
        .expect("the doc marks the matrix start");
    let end = doc
        .find("<!-- matrix:end -->")
        .expect("the doc marks the matrix end");
    let rows: Vec<Vec<String>> = doc[start..end]
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    let header: Vec<String> = std::iter::once("route".to_owned())
        .chain(WHO.iter().map(|w| w.label().to_owned()))
        .collect();
    assert_eq!(rows.first(), Some(&header), "the doc's header row");
    let body = rows.get(2..).unwrap_or_default();
    assert_eq!(body.len(), MATRIX.len(), "one doc row per tested row");
    for (doc_row, row) in body.iter().zip(MATRIX) {
        // `METHOD path`, followed by † where a 404 hides existence.
        let route = doc_row.first().map(String::as_str).unwrap_or_default();
        let (route, hides) = match route.strip_suffix(" †") {
            Some(r) => (r, true),
            None => (route, false),
        };
        assert_eq!(
            route.trim_matches('`'),
            row.route,
            "docs/authorization.md row order"
        );
        assert_eq!(hides, row.hides, "† on the doc's row for {}", row.route);
        let cells: Vec<&str> = row.expect.iter().map(|c| c.letter()).collect();
        assert_eq!(
            &doc_row[1..],
            &cells[..],
            "docs/authorization.md row for {}",
            row.route
        );
    }
}

/// The rows of every table of the database: malformed requests must not
/// change any.
async fn row_counts(rt: &Runtime) -> Vec<(String, i64)> {
    use sqlx::Row;
    use vtelehealth_runtime::db::Backend;
    let tables = match rt.db.backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name NOT LIKE '_sqlx%' ORDER BY 1"
        }
    };
    let names: Vec<String> = sqlx::query(tables)
        .fetch_all(&rt.db.pool)
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let mut counts = Vec::new();
    for name in names {
        // The names come from the database's own catalogue.
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {name}"));
        let n: i64 = sqlx::query(sql)
            .fetch_one(&rt.db.pool)
            .await
            .expect("count")
            .get(0);
        counts.push((name, n));
    }
    counts
}

/// Whether an answer is the API's documented error shape, in both languages.
fn in_error_shape(content_type: &str, body: &Value) -> bool {
    let text = |k: &str| body["error"][k].as_str().is_some_and(|s| !s.is_empty());
    content_type.starts_with("application/json")
        && text("code")
        && text("message")
        && text("message_vi")
}

/// Send one malformed request; a problem when the answer is not a 4xx in
/// the error shape (or, when `may_succeed`, a 2xx).
async fn malformed(req: reqwest::RequestBuilder, may_succeed: bool) -> Option<String> {
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    let fine = match status {
        400..=499 => in_error_shape(&content_type, &answer),
        200..=299 => may_succeed,
        _ => false,
    };
    (!fine).then(|| format!("{status} {content_type} {answer}"))
}

/// Every route of the matrix, called by a principal it allows, with a
/// malformed request: broken JSON, a wrong content type, wrong field types,
/// a method the route does not have, bad query parameters. Each answer is a
/// 4xx in the `{"error":{...}}` shape, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_malformed_requests_in_the_error_shape() {
    let fx = Fixture::new().await;
    // Built first: preparing a cell may create the objects it needs.
    let mut requests = Vec::new();
    for row in MATRIX {
        // A plugin's own answers are the plugin's business, not the API's.
        if row.op == Op::PluginCall {
            continue;
        }
        let Some(i) = row.expect.iter().position(|c| *c == A) else {
            continue;
        };
        let who = WHO[i];
        let (method, path, body) = fx.prepare(row.op, who).await;
        requests.push((row.route, who, method, path, body));
    }
    let authed = |req: reqwest::RequestBuilder, who: &Who| match fx.tokens.get(who) {
        Some(token) => req.bearer_auth(token),
        None => req,
    };
    // A client per request: a refusal sent before the body is read closes
    // its connection, which a pooled client might otherwise reuse.
    let fresh = reqwest::Client::new;
    let before = row_counts(&fx.server.runtime).await;
    let mut problems = Vec::new();
    for (route, who, method, path, body) in &requests {
        let url = format!("{}{path}", fx.server.base);
        let mut variants = vec![(
            "a method it does not have",
            fresh().request(reqwest::Method::PATCH, &url),
        )];
        if let Some(body) = body {
            let send = |ct: &str, bytes: Vec<u8>| {
                fresh()
                    .request(method.parse().expect("method"), &url)
                    .header("content-type", ct)
                    .body(bytes)
            };
            let valid = serde_json::to_vec(body).expect("body");
            variants.push(("broken JSON", send("application/json", b"{\"".to_vec())));
            variants.push(("a wrong content type", send("text/plain", valid)));
            variants.push((
                "wrong field types",
                send("application/json", b"[1, \"two\", {}]".to_vec()),
            ));
        }
        for (what, req) in variants {
            if let Some(p) = malformed(authed(req, who), false).await {
                problems.push(format!("{route} as {} with {what}: {p}", who.label()));
            }
        }
    }
    let after = row_counts(&fx.server.runtime).await;
    // Queries no route accepts as given. Routes without query parameters
    // ignore them (2xx is fine there, and a read may be audited: so this
    // comes after the count).
    let bad_query = "limit=not-a-number&after=x&newest=-&day=someday&merchant=";
    for (route, who, method, path, _) in &requests {
        if *method != "GET" {
            continue;
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}{bad_query}", fx.server.base);
        if let Some(p) = malformed(authed(fresh().get(url), who), true).await {
            problems.push(format!(
                "{route} as {} with bad query parameters: {p}",
                who.label()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(before, after, "malformed requests changed the database");
}
