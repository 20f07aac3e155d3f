//! Hello: greets the caller on behalf of the hospital, in Vietnamese and English.
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, identity, json};

struct Hello;

impl Plugin for Hello {
    fn handle(req: Request) -> Result<Response, Error> {
        match (req.method(), req.segments().as_slice()) {
            ("GET", []) => {
                let hospital = identity::current().hospital;
                Ok(Response::ok_json(&json!({
                    "hospital": { "id": hospital.id, "name": hospital.name },
                    "vi": format!("Xin chào từ {}!", hospital.name),
                    "en": format!("Hello from {}!", hospital.name),
                })))
            }
            _ => Err(Error::not_found(format!("no page {}", req.path()))),
        }
    }
}

export_plugin!(Hello);
