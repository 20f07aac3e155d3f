//! E-pharmacy: a citizen orders the medicines of one of their active e-prescriptions
//! (FHIR `MedicationRequest`) from a pharmacy partner of the hospital, pays through the
//! `payment` capability, and follows the order until it is delivered. Cancelling before the
//! pharmacy dispenses refunds the whole payment.
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /prescriptions` | citizen | their active MedicationRequests at this hospital |
//! | `GET /pharmacies` | anyone signed in | the partners and their prices (from the activation) |
//! | `POST /orders` `{"medication_request", "pharmacy"}` | citizen | a new order and the checkout URL |
//! | `GET /orders`, `GET /orders/{id}` | citizen | their own orders |
//! | `POST /orders/{id}/cancel` | citizen | cancel before `dispensed`; refunds what was paid |
//! | `GET /pharmacy/orders` | service | the hospital's paid orders |
//! | `POST /pharmacy/orders/{id}/status` `{"status"}` | service | `dispensed`, `out-for-delivery`, `delivered`, in that order |
//! | `POST /settle` | anyone signed in | apply the settlement events now |
//! | `GET /queue` | the hospital's practitioners and admins | the paid orders, without who ordered them |
//! | `GET /ui/orders.html` (and its files under `/ui/`) | the hospital's practitioners and admins | the order queue page |
//!
//! Orders live in kv (one store per hospital) under `order/{citizen subject}/{order id}`, so
//! a citizen's listing and reads only ever touch their own keys. Every read of an order
//! first applies the pending settlement events: each event is acted on once (state
//! transitions by compare-and-swap, then a kv guard per event id) and then acknowledged.
use serde::{Deserialize, Serialize};
use vtelehealth_plugin_sdk::payment::{self, IntentState, Merchant};
use vtelehealth_plugin_sdk::records::{self, Purpose};
use vtelehealth_plugin_sdk::serde_json::{self, Value};
use vtelehealth_plugin_sdk::web::{Asset, PAGE_SCRIPT, PAGE_STYLE, Router};
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, identity, json, kv};

/// The order queue page and its files, served under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset::html("/ui/orders.html", include_str!("../ui/orders.html")),
    Asset::js("/ui/orders.js", include_str!("../ui/orders.js")),
    Asset::js("/ui/vth.js", PAGE_SCRIPT),
    Asset::css("/ui/vth.css", PAGE_STYLE),
];

struct Epharmacy;

/// A pharmacy partner, as configured by the hospital at activation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pharmacy {
    id: String,
    name: String,
    /// Price in đồng of one unit, by medication code.
    prices: std::collections::BTreeMap<String, i64>,
    /// The service client allowed to advance this pharmacy's orders; any service client of
    /// the hospital when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Config {
    #[serde(default)]
    pharmacies: Vec<Pharmacy>,
}

const CONFIG_KEY: &str = "config";

const AWAITING: &str = "awaiting-payment";
const CONFIRMED: &str = "confirmed";
const DISPENSED: &str = "dispensed";
const OUT_FOR_DELIVERY: &str = "out-for-delivery";
const DELIVERED: &str = "delivered";
const CANCELLED: &str = "cancelled";
const PAYMENT_FAILED: &str = "payment-failed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    citizen: String,
    medication_request: String,
    medication: Value,
    quantity: i64,
    unit_price: i64,
    /// Total in đồng.
    amount: i64,
    pharmacy: String,
    pharmacy_name: String,
    status: String,
    payment: String,
    /// Đồng refunded.
    refunded: i64,
    /// Every status the order went through, in order.
    history: Vec<String>,
}

fn order_key(citizen: &str, id: &str) -> String {
    format!("order/{citizen}/{id}")
}

fn config() -> Result<Config, Error> {
    Ok(kv::get_json::<Config>(CONFIG_KEY)?.unwrap_or_default())
}

/// The signed-in citizen's subject, or 403.
fn citizen() -> Result<String, Error> {
    let ctx = identity::current();
    match ctx.principal {
        Some(p) if p.has_role("citizen") => Ok(p.subject),
        _ => Err(Error::forbidden("citizens only")),
    }
}

/// The signed-in service client's subject, or 403: a service client of this hospital.
fn pharmacy_service() -> Result<String, Error> {
    let ctx = identity::current();
    match ctx.principal {
        Some(p)
            if p.has_role("service")
                && p.hospital.as_ref().is_some_and(|h| h.id == ctx.hospital.id) =>
        {
            Ok(p.subject)
        }
        _ => Err(Error::forbidden(
            "pharmacy partners (service clients of this hospital) only",
        )),
    }
}

/// The signed-in practitioner or admin of this hospital, or 403.
fn hospital_staff() -> Result<(), Error> {
    let ctx = identity::current();
    match ctx.principal {
        Some(p)
            if (p.has_role("practitioner") || p.has_role("hospital-admin"))
                && p.hospital.as_ref().is_some_and(|h| h.id == ctx.hospital.id) =>
        {
            Ok(())
        }
        _ => Err(Error::forbidden(
            "the hospital's practitioners and admins only",
        )),
    }
}

/// The hospital's orders once paid (not awaiting payment, not failed).
fn paid_orders() -> Result<Vec<Order>, Error> {
    settle()?;
    let mut orders = Vec::new();
    for key in kv::list_keys("index/")? {
        let Some(at) = kv::get_json::<String>(&key)? else {
            continue;
        };
        if let Some(o) = kv::get_json::<Order>(&at)?
            && o.status != AWAITING
            && o.status != PAYMENT_FAILED
        {
            orders.push(o);
        }
    }
    Ok(orders)
}

/// `GET /queue`: the paid orders for the hospital's staff, without the citizen's subject.
fn queue() -> Result<Response, Error> {
    hospital_staff()?;
    let orders: Vec<Value> = paid_orders()?
        .into_iter()
        .map(|o| {
            json!({
                "id": o.id,
                "medication": o.medication.get("text").cloned()
                    .or_else(|| o.medication.pointer("/coding/0/display").cloned())
                    .unwrap_or(Value::Null),
                "quantity": o.quantity, "unit_price": o.unit_price, "amount": o.amount,
                "pharmacy": o.pharmacy_name, "status": o.status, "refunded": o.refunded,
                "history": o.history,
            })
        })
        .collect();
    Ok(Response::ok_json(&json!({ "orders": orders })))
}

fn medication_code(mr: &Value) -> Option<String> {
    mr.pointer("/medicationCodeableConcept/coding")?
        .as_array()?
        .iter()
        .find_map(|c| c.get("code")?.as_str().map(str::to_owned))
}

fn quantity(mr: &Value) -> Result<i64, Error> {
    match mr.pointer("/dispenseRequest/quantity/value") {
        None => Ok(1),
        Some(v) => match v.as_i64() {
            Some(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(Error::bad_request(
                "the prescription's dispense quantity is not a whole number from 1 to 10000",
            )),
        },
    }
}

fn prescription_json(mr: &Value) -> Value {
    json!({
        "id": mr["id"],
        "status": mr["status"],
        "authored_on": mr.get("authoredOn"),
        "medication": mr.get("medicationCodeableConcept"),
        "code": medication_code(mr),
        "quantity": quantity(mr).ok(),
        "dosage": mr.get("dosageInstruction"),
    })
}

/// Apply the settlement events not yet acknowledged, each once.
fn settle() -> Result<u32, Error> {
    let mut handled = 0;
    for event in payment::settlement_events(100)? {
        // The transitions are compare-and-swaps from a given status, so applying an event
        // twice (a crash before the guard) changes nothing; the guard counts it once.
        apply_event(&event.kind, &event.intent_id)?;
        if kv::compare_and_swap(&format!("event/{}", event.id), None, b"1")? {
            handled += 1;
        }
        payment::acknowledge(&event.id)?;
    }
    Ok(handled)
}

fn apply_event(kind: &str, intent_id: &str) -> Result<(), Error> {
    let Some(key) = kv::get_json::<String>(&format!("intent/{intent_id}"))? else {
        return Ok(()); // not an order of this plugin
    };
    let to = match kind {
        "payment.succeeded" => CONFIRMED,
        "payment.failed" | "payment.cancelled" => PAYMENT_FAILED,
        _ => return Ok(()),
    };
    let order = kv::update_json(&key, |order: Option<Order>| {
        let mut order = order.ok_or_else(|| Error::internal("order vanished"))?;
        if order.status == AWAITING {
            order.status = to.to_owned();
            order.history.push(to.to_owned());
        }
        Ok(order)
    })?;
    // Paid after the citizen cancelled (the cancel of the intent lost a race with the
    // gateway): the money goes back.
    if kind == "payment.succeeded" && order.status == CANCELLED {
        refund_all(&key, &order)?;
    }
    Ok(())
}

/// Refund everything captured and not yet refunded of a cancelled order's payment (the
/// same idempotency key every time), and record the refunded amount on the order.
fn refund_all(key: &str, order: &Order) -> Result<Order, Error> {
    let mut intent = payment::get(&order.payment)?;
    if matches!(
        intent.state,
        IntentState::Succeeded | IntentState::PartiallyRefunded
    ) && intent.captured > intent.refunded
    {
        intent = payment::refund(
            &order.payment,
            intent.captured - intent.refunded,
            &format!("cancel-{}", order.id),
        )?;
    }
    let refunded = intent.refunded;
    kv::update_json(key, |o: Option<Order>| {
        let mut o = o.ok_or_else(|| Error::internal("order vanished"))?;
        o.refunded = refunded;
        Ok(o)
    })
}

fn load(citizen: &str, id: &str) -> Result<Order, Error> {
    kv::get_json::<Order>(&order_key(citizen, id))?
        .ok_or_else(|| Error::not_found(format!("no order {id}")))
}

fn create_order(req: &Request) -> Result<Response, Error> {
    #[derive(Deserialize)]
    struct NewOrder {
        medication_request: String,
        pharmacy: String,
    }
    let who = citizen()?;
    let body: NewOrder = req.json()?;
    let config = config()?;
    let pharmacy = config
        .pharmacies
        .iter()
        .find(|p| p.id == body.pharmacy)
        .ok_or_else(|| Error::bad_request(format!("no pharmacy partner {}", body.pharmacy)))?;
    if body.medication_request.is_empty()
        || !body
            .medication_request
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(Error::bad_request(
            "medication_request must be a resource id",
        ));
    }
    // Patient context: the host only returns the signed-in citizen's own records.
    let mr = records::read(
        "MedicationRequest",
        &body.medication_request,
        Purpose::Payment,
    )?;
    if mr["status"] != "active" {
        return Err(Error::conflict(format!(
            "prescription {} is {}, not active",
            body.medication_request, mr["status"]
        )));
    }
    let code = medication_code(&mr)
        .ok_or_else(|| Error::bad_request("the prescription names no coded medication"))?;
    let unit_price = *pharmacy.prices.get(&code).ok_or_else(|| {
        Error::conflict(format!("{} does not sell medication {code}", pharmacy.name))
    })?;
    let quantity = quantity(&mr)?;
    let amount = unit_price
        .checked_mul(quantity)
        .filter(|a| *a > 0)
        .ok_or_else(|| Error::bad_request("the order's amount is out of range"))?;
    let id = format!("dh-{}", kv::increment("seq/order", 1)?);
    let display = mr
        .pointer("/medicationCodeableConcept/text")
        .and_then(Value::as_str)
        .unwrap_or(&code)
        .to_owned();
    let intent = payment::create(
        amount,
        &who,
        Merchant::Vendor,
        &format!("Đơn thuốc {id}: {display} x{quantity} ({})", pharmacy.name),
        &id,
    )?;
    let key = order_key(&who, &id);
    let order = Order {
        id: id.clone(),
        citizen: who,
        medication_request: body.medication_request,
        medication: mr
            .get("medicationCodeableConcept")
            .cloned()
            .unwrap_or(Value::Null),
        quantity,
        unit_price,
        amount,
        pharmacy: pharmacy.id.clone(),
        pharmacy_name: pharmacy.name.clone(),
        status: AWAITING.to_owned(),
        payment: intent.id.clone(),
        refunded: 0,
        history: vec![AWAITING.to_owned()],
    };
    kv::set_json(&format!("intent/{}", intent.id), &key)?;
    kv::set_json(&format!("index/{id}"), &key)?;
    kv::set_json(&key, &order)?;
    let checkout = payment::checkout(&intent.id, &format!("/orders/{id}"))?;
    Ok(Response::json(
        201,
        &json!({ "order": order, "checkout_url": checkout }),
    ))
}

fn cancel(who: &str, id: &str) -> Result<Response, Error> {
    settle()?;
    let key = order_key(who, id);
    let order = kv::update_json(&key, |order: Option<Order>| {
        let mut order = order.ok_or_else(|| Error::not_found(format!("no order {id}")))?;
        match order.status.as_str() {
            AWAITING | CONFIRMED | PAYMENT_FAILED => {
                order.status = CANCELLED.to_owned();
                order.history.push(CANCELLED.to_owned());
                Ok(order)
            }
            // A cancelled order: retry the refund below if it failed last time.
            CANCELLED => Ok(order),
            other => Err(Error::conflict(format!(
                "order {id} is {other}: it can no longer be cancelled"
            ))),
        }
    })?;
    // The order is cancelled now, so the pharmacy can no longer dispense it; give the money
    // back whatever state the payment reached.
    let intent = payment::get(&order.payment)?;
    if matches!(intent.state, IntentState::Created | IntentState::Pending)
        && payment::cancel(&order.payment).is_ok()
    {
        return Ok(Response::ok_json(&order));
    }
    // Paid (possibly in the meantime): refund it.
    let order = refund_all(&key, &order)?;
    Ok(Response::ok_json(&order))
}

fn advance(id: &str, req: &Request) -> Result<Response, Error> {
    #[derive(Deserialize)]
    struct Status {
        status: String,
    }
    let service = pharmacy_service()?;
    let body: Status = req.json()?;
    settle()?;
    let key = kv::get_json::<String>(&format!("index/{id}"))?
        .ok_or_else(|| Error::not_found(format!("no order {id}")))?;
    let config = config()?;
    let order = kv::update_json(&key, |order: Option<Order>| {
        let mut order = order.ok_or_else(|| Error::not_found(format!("no order {id}")))?;
        let allowed = config
            .pharmacies
            .iter()
            .find(|p| p.id == order.pharmacy)
            .is_none_or(|p| p.client.as_deref().is_none_or(|c| c == service));
        if !allowed {
            return Err(Error::forbidden(format!(
                "order {id} belongs to another pharmacy"
            )));
        }
        let next = match order.status.as_str() {
            CONFIRMED => DISPENSED,
            DISPENSED => OUT_FOR_DELIVERY,
            OUT_FOR_DELIVERY => DELIVERED,
            other => {
                return Err(Error::conflict(format!(
                    "order {id} is {other}: it cannot become {}",
                    body.status
                )));
            }
        };
        if body.status != next {
            return Err(Error::conflict(format!(
                "order {id} is {}: the next status is {next}, not {}",
                order.status, body.status
            )));
        }
        order.status = next.to_owned();
        order.history.push(next.to_owned());
        Ok(order)
    })?;
    Ok(Response::ok_json(&order))
}

impl Plugin for Epharmacy {
    fn handle(req: Request) -> Result<Response, Error> {
        match (req.method(), req.segments().as_slice()) {
            ("GET", ["prescriptions"]) => {
                citizen()?;
                let page = records::search("MedicationRequest", "_count=100", Purpose::Payment)?;
                let active: Vec<Value> = page
                    .resources
                    .iter()
                    .filter(|mr| mr["status"] == "active")
                    .map(prescription_json)
                    .collect();
                Ok(Response::ok_json(&json!({ "prescriptions": active })))
            }
            ("GET", ["pharmacies"]) => {
                if identity::current().principal.is_none() {
                    return Err(Error::forbidden("sign in first"));
                }
                Ok(Response::ok_json(&config()?))
            }
            ("POST", ["orders"]) => create_order(&req),
            ("GET", ["orders"]) => {
                let who = citizen()?;
                settle()?;
                let mut orders = Vec::new();
                for key in kv::list_keys(&format!("order/{who}/"))? {
                    if let Some(o) = kv::get_json::<Order>(&key)? {
                        orders.push(o);
                    }
                }
                Ok(Response::ok_json(&json!({ "orders": orders })))
            }
            ("GET", ["orders", id]) => {
                let who = citizen()?;
                settle()?;
                Ok(Response::ok_json(&load(&who, id)?))
            }
            ("POST", ["orders", id, "cancel"]) => cancel(&citizen()?, id),
            ("GET", ["pharmacy", "orders"]) => {
                pharmacy_service()?;
                Ok(Response::ok_json(&json!({ "orders": paid_orders()? })))
            }
            ("POST", ["pharmacy", "orders", id, "status"]) => advance(id, &req),
            ("POST", ["settle"]) => {
                if identity::current().principal.is_none() {
                    return Err(Error::forbidden("sign in first"));
                }
                Ok(Response::ok_json(&json!({ "handled": settle()? })))
            }
            // The staff's queue and the page's files.
            _ => Router::new()
                .assets(ASSETS)
                .get("/queue", |_, _| queue())
                .handle(&req),
        }
    }

    /// Keep the hospital's pharmacy partners: the plugin sees its configuration only here.
    fn on_activate(config: Value) -> Result<(), String> {
        let parsed: Config = match config.get("pharmacies") {
            None => Config::default(),
            Some(_) => {
                serde_json::from_value(config.clone()).map_err(|e| format!("pharmacies: {e}"))?
            }
        };
        let mut ids = std::collections::BTreeSet::new();
        for p in &parsed.pharmacies {
            if p.id.is_empty() || p.name.is_empty() {
                return Err("every pharmacy needs an id and a name".into());
            }
            if !ids.insert(p.id.as_str()) {
                return Err(format!("pharmacy {} is listed twice", p.id));
            }
            if let Some((code, price)) = p.prices.iter().find(|(_, v)| **v <= 0) {
                return Err(format!(
                    "pharmacy {}: the price of {code} must be a positive number of đồng, not {price}",
                    p.id
                ));
            }
        }
        kv::set_json(CONFIG_KEY, &parsed).map_err(|e| e.message().to_owned())
    }
}

export_plugin!(Epharmacy);
