//! Print the ACK or the transaction Bundle for an HL7 file:
//! `cargo run -p hl7v2 --example translate -- <file.hl7> [hospital-id]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: translate <file.hl7> [hospital-id]")?;
    let hospital = args.next().unwrap_or_else(|| "bach-mai".into());
    let body = std::fs::read(&path)?;
    let ctx = hl7v2::MappingContext::new(hospital);
    match hl7v2::receive(&body, &ctx, "20240312120000+0700") {
        hl7v2::Received::Mapped { message, bundle } => {
            let target = hl7v2::AckTarget::from_message(&message);
            println!("{}", serde_json::to_string_pretty(&bundle)?);
            println!(
                "{}",
                hl7v2::ack(&target, None, "20240312120000+0700").replace('\r', "\n")
            );
        }
        hl7v2::Received::Refused { ack, .. } => println!("{}", ack.replace('\r', "\n")),
    }
    Ok(())
}
