//! TEST ONLY: calls the `video` capability as the request says, so the end-to-end tests can
//! check which caller and which plugin may act on which room. Not a reference plugin.
//!
//! | route | call |
//! | --- | --- |
//! | `POST /rooms` `{purpose, max_participants, requesting_hospital?}` | `video::create_room` |
//! | `POST /rooms/{room}/invite` `{practitioner, role}` | `video::invite` |
//! | `POST /rooms/{room}/token/{participant}` | `video::issue_join_token` |
//! | `GET /rooms/{room}/participants` | `video::list_participants` |
//! | `POST /rooms/{room}/end` | `video::end_room` |
use vtelehealth_plugin_sdk::serde_json::{self, Value};
use vtelehealth_plugin_sdk::video::{self, Participant, Role, Room, RoomSpec};
use vtelehealth_plugin_sdk::{Error, Plugin, Request, Response, export_plugin, json};

struct Probe;

fn body(req: &Request) -> Result<Value, Error> {
    serde_json::from_slice(&req.body).map_err(|e| Error::bad_request(format!("body: {e}")))
}

fn text(v: &Value, key: &str) -> Result<String, Error> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::bad_request(format!("`{key}` is required")))
}

fn room_json(r: &Room) -> Value {
    json!({
        "id": r.id, "host_hospital": r.host_hospital, "requesting_hospital": r.requesting_hospital,
        "purpose": r.purpose, "max_participants": r.max_participants, "status": r.status,
    })
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Chair => "chair",
        Role::Presenter => "presenter",
        Role::Participant => "participant",
        Role::Observer => "observer",
    }
}

fn participant_json(p: &Participant) -> Value {
    json!({
        "id": p.id, "subject": p.subject, "name": p.name, "hospital": p.hospital_id,
        "role": role_name(p.role), "admitted": p.admitted, "removed": p.removed,
        "present": p.present, "first_joined_at": p.first_joined_at, "last_left_at": p.last_left_at,
    })
}

impl Plugin for Probe {
    fn handle(req: Request) -> Result<Response, Error> {
        let segments: Vec<String> = req.segments().iter().map(|s| s.to_string()).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (req.method(), segments.as_slice()) {
            ("POST", ["rooms"]) => {
                let b = body(&req)?;
                let room = video::create_room(&RoomSpec {
                    requesting_hospital: b["requesting_hospital"].as_str().map(str::to_owned),
                    purpose: text(&b, "purpose")?,
                    max_participants: b["max_participants"]
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(4),
                    scheduled_at: None,
                    consultation_id: None,
                })?;
                Ok(Response::ok_json(&room_json(&room)))
            }
            ("POST", ["rooms", room, "invite"]) => {
                let b = body(&req)?;
                let role = match text(&b, "role")?.as_str() {
                    "chair" => Role::Chair,
                    "presenter" => Role::Presenter,
                    "observer" => Role::Observer,
                    _ => Role::Participant,
                };
                let p = video::invite(room, &text(&b, "practitioner")?, role)?;
                Ok(Response::ok_json(&participant_json(&p)))
            }
            ("POST", ["rooms", room, "token", participant]) => {
                let t = video::issue_join_token(room, participant, None)?;
                Ok(Response::ok_json(&json!({
                    "token": t.token, "expires_at": t.expires_at, "can_publish": t.can_publish,
                    "signalling_url": t.signalling_url, "room_url": t.room_url,
                })))
            }
            ("GET", ["rooms", room, "participants"]) => {
                let list = video::list_participants(room)?;
                Ok(Response::ok_json(&json!({
                    "participants": list.iter().map(participant_json).collect::<Vec<_>>()
                })))
            }
            ("POST", ["rooms", room, "end"]) => {
                Ok(Response::ok_json(&room_json(&video::end_room(room)?)))
            }
            _ => Err(Error::not_found(format!(
                "no route for {} {}",
                req.method(),
                req.path()
            ))),
        }
    }
}

export_plugin!(Probe);
