//! TEST ONLY: calls the `payment` capability as the request says, so the end-to-end tests can
//! check intents, refunds and settlement events through a real plugin. Not a reference plugin.
//!
//! | route | call |
//! | --- | --- |
//! | `POST /intents` `{amount, currency, payer, merchant, purpose, key}` | `payment.create` |
//! | `GET /intents/{id}` | `payment.get` |
//! | `POST /intents/{id}/checkout?return=/path` | `payment.checkout` → `{"url"}` |
//! | `POST /intents/{id}/cancel` | `payment.cancel` |
//! | `POST /intents/{id}/refund` `{amount, key}` | `payment.refund` |
//! | `POST /settle` | handle each settlement event once (kv guard), acknowledge it |
//! | `GET /settled` | how many events were handled, by kind |
use vtelehealth_plugin_sdk::bindings::vtelehealth::platform::payment as raw;
use vtelehealth_plugin_sdk::payment::{self, Intent, IntentState, Merchant};
use vtelehealth_plugin_sdk::serde_json::{self, Value};
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, json, kv};

struct Probe;

fn body(req: &Request) -> Result<Value, Error> {
    serde_json::from_slice(&req.body).map_err(|e| Error::bad_request(format!("body: {e}")))
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn intent_json(i: &Intent) -> Value {
    let state = match i.state {
        IntentState::Created => "created",
        IntentState::Pending => "pending",
        IntentState::Succeeded => "succeeded",
        IntentState::Failed => "failed",
        IntentState::Cancelled => "cancelled",
        IntentState::PartiallyRefunded => "partially_refunded",
        IntentState::Refunded => "refunded",
    };
    json!({
        "id": i.id, "amount": i.amount, "state": state,
        "captured": i.captured, "refunded": i.refunded,
    })
}

impl Plugin for Probe {
    fn handle(req: Request) -> Result<Response, Error> {
        let segments: Vec<String> = req.segments().iter().map(|s| s.to_string()).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (req.method(), segments.as_slice()) {
            ("POST", ["intents"]) => {
                let b = body(&req)?;
                let merchant = match text(&b, "merchant").as_str() {
                    "hospital" => Merchant::Hospital,
                    _ => Merchant::Vendor,
                };
                let i = raw::create(&raw::NewIntent {
                    amount: b.get("amount").and_then(Value::as_i64).unwrap_or(0),
                    currency: text(&b, "currency"),
                    payer: text(&b, "payer"),
                    merchant,
                    purpose: text(&b, "purpose"),
                    idempotency_key: text(&b, "key"),
                })?;
                Ok(Response::ok_json(&intent_json(&i)))
            }
            ("GET", ["intents", id]) => Ok(Response::ok_json(&intent_json(&payment::get(id)?))),
            ("POST", ["intents", id, "checkout"]) => {
                let back = req.query_param("return").unwrap_or_else(|| "/".into());
                Ok(Response::ok_json(
                    &json!({ "url": payment::checkout(id, &back)? }),
                ))
            }
            ("POST", ["intents", id, "cancel"]) => {
                Ok(Response::ok_json(&intent_json(&payment::cancel(id)?)))
            }
            ("POST", ["intents", id, "refund"]) => {
                let b = body(&req)?;
                let amount = b.get("amount").and_then(Value::as_i64).unwrap_or(0);
                Ok(Response::ok_json(&intent_json(&payment::refund(
                    id,
                    amount,
                    &text(&b, "key"),
                )?)))
            }
            ("POST", ["settle"]) => {
                let mut handled = 0;
                for event in payment::settlement_events(100)? {
                    // The kv guard makes a redelivered event count once.
                    if kv::compare_and_swap(&format!("event/{}", event.id), None, b"1")? {
                        kv::increment(&format!("count/{}", event.kind), 1)?;
                        handled += 1;
                    }
                    payment::acknowledge(&event.id)?;
                }
                Ok(Response::ok_json(&json!({ "handled": handled })))
            }
            ("GET", ["settled"]) => {
                let mut out = serde_json::Map::new();
                for key in kv::list_keys_page("count/", None, 100)? {
                    let n = kv::increment(&key, 0)?;
                    out.insert(key.trim_start_matches("count/").to_owned(), json!(n));
                }
                Ok(Response::ok_json(&Value::Object(out)))
            }
            _ => Err(Error::not_found(format!(
                "no route {} {}",
                req.method(),
                req.path()
            ))),
        }
    }
}

export_plugin!(Probe);
