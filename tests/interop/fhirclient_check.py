"""Interoperability check of /fhir/R4 with the SMART on FHIR Python client.

Run by tests/e2e/interop.rs with the virtualenv that `cargo xtask test`
prepares (target/fhir-venv). fhirclient's R4 models are strict: they raise
on unknown elements, wrongly typed values and missing required elements, so
every response parsed here is valid R4 JSON as a real client reads it.

Environment: VTH_FHIR_BASE (e.g. http://127.0.0.1:1234/fhir/R4) and
VTH_FHIR_TOKEN (a bearer token of a practitioner). Exits 0 when every check
passes; otherwise prints what failed and exits 1.
"""

import os
import sys
import traceback
import warnings

import requests
from fhirclient import client, server as fhirserver
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.contactpoint import ContactPoint
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.patient import Patient
from fhirclient.models.quantity import Quantity

CCCD_SYSTEM = "https://vneid.gov.vn/cccd"
LOINC = "http://loinc.org"
HEART_RATE = "8867-4"
SYSTOLIC = "8480-6"

# perform() and perform_resources() are deprecated in fhirclient 4.4 but are
# what most client code calls; they must keep working against us.
warnings.simplefilter("ignore", DeprecationWarning)


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def check_json_shape(value, where):
    """R4 JSON rules the models do not check: no null, no empty string,
    object or array (an empty array is how an absent element is not sent)."""
    if value is None or value == "" or value == [] or value == {}:
        raise AssertionError(f"{where}: empty or null value")
    if isinstance(value, dict):
        for k, v in value.items():
            check_json_shape(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_json_shape(v, f"{where}[{i}]")


def outcome_of(response, status):
    """The OperationOutcome of an error response, parsed by the model."""
    check(response.status_code == status, f"HTTP {status} (got {response.status_code})")
    ctype = response.headers.get("content-type", "")
    check(ctype.startswith("application/fhir+json"), f"error content type {ctype}")
    oo = OperationOutcome(response.json())
    check(len(oo.issue) > 0 and oo.issue[0].severity == "error", "OperationOutcome with an error issue")
    return oo


def observation(patient_id, code, when, value):
    o = Observation()
    o.status = "final"
    o.category = [
        CodeableConcept(
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        )
    ]
    o.code = CodeableConcept()
    o.code.coding = [Coding({"system": LOINC, "code": code})]
    o.subject = FHIRReference({"reference": f"Patient/{patient_id}"})
    o.effectiveDateTime = FHIRDateTime(when)
    o.valueQuantity = Quantity(
        {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    )
    return o


def run(base, token):
    smart = client.FHIRClient(settings={"app_id": "vtelehealth-interop", "api_base": base})
    srv = smart.server
    # Our tokens come from the platform's identity provider, not a SMART
    # launch, so the bearer token rides on the client's requests session.
    srv.session.headers["Authorization"] = f"Bearer {token}"

    # The client's own metadata fetch, and the model read directly.
    smart.prepare()
    cs = srv.capabilityStatement
    check(isinstance(cs, CapabilityStatement), "client fetched the CapabilityStatement")
    check(cs.fhirVersion == "4.0.1", "fhirVersion 4.0.1")
    cs2 = CapabilityStatement.read_from("metadata", srv)
    types = {r.type for r in cs2.rest[0].resource}
    check({"Patient", "Observation"} <= types, "Patient and Observation are served")

    # Create a patient through the model.
    p = Patient()
    p.identifier = [Identifier({"system": CCCD_SYSTEM, "value": "001088054321"})]
    p.name = [HumanName({"family": "Trần", "given": ["Thị", "Ngọc", "Ánh"], "use": "official"})]
    p.gender = "female"
    p.birthDate = FHIRDate("1990-07-15")
    created = p.create(srv)
    check(created is not None and created.get("id"), "Patient.create returned the stored resource")
    pid = created["id"]
    p = Patient.read(pid, srv)
    check(p.id == pid and p.meta.versionId == "1", "Patient.read: version 1")
    check(p.name[0].family == "Trần" and p.name[0].given == ["Thị", "Ngọc", "Ánh"], "Vietnamese name round-trips")
    check(p.identifier[0].system == CCCD_SYSTEM and p.identifier[0].value == "001088054321", "CCCD identifier round-trips")
    check(p.birthDate.isostring == "1990-07-15", "birthDate round-trips")

    # Update through the model (PUT of the model's JSON, meta included).
    p.telecom = [ContactPoint({"system": "phone", "value": "0987654321"})]
    p.gender = "other"
    updated = p.update(srv)
    check(updated["meta"]["versionId"] == "2", "Patient.update: version 2")
    p = Patient.read(pid, srv)
    check(p.gender == "other" and p.meta.versionId == "2", "read after update sees version 2")
    check(p.telecom[0].value == "0987654321", "the added telecom is stored")
    v1 = Patient.read_from(f"Patient/{pid}/_history/1", srv)
    check(v1.gender == "female" and v1.meta.versionId == "1", "vread of version 1")

    # Observations: three heart rates on three days, one systolic pressure.
    obs_ids = []
    for day, code, value in [(1, HEART_RATE, 72), (2, HEART_RATE, 80), (3, SYSTOLIC, 120), (4, HEART_RATE, 76)]:
        o = observation(pid, code, f"2026-03-0{day}T08:30:00+07:00", value)
        ret = o.create(srv)
        check(ret and ret["resourceType"] == "Observation", f"Observation.create (day {day})")
        obs_ids.append(ret["id"])
    o = Observation.read(obs_ids[0], srv)
    check(o.subject.reference == f"Patient/{pid}", "Observation.read: subject")
    check(o.effectiveDateTime.isostring.startswith("2026-03-01T08:30:00"), "Observation.read: effectiveDateTime")
    check(o.valueQuantity.value == 72, "Observation.read: valueQuantity")
    o.status = "amended"
    o.valueQuantity.value = 74
    o.update(srv)
    o = Observation.read(obs_ids[0], srv)
    check(o.status == "amended" and o.meta.versionId == "2", "Observation.update")

    # Search with the client's query builder.
    found = Observation.where(
        struct={"subject": f"Patient/{pid}", "code": f"{LOINC}|{HEART_RATE}"}
    ).perform_resources(srv)
    check(sorted(r.id for r in found) == sorted([obs_ids[0], obs_ids[1], obs_ids[3]]), "search by patient and code")
    check(all(isinstance(r, Observation) for r in found), "search results are Observation models")
    bundle = Observation.where(struct={"patient": pid}).perform(srv)
    check(isinstance(bundle, Bundle) and bundle.type == "searchset", "perform() gives a searchset Bundle")
    check(bundle.total == 4 and len(bundle.entry) == 4, "Bundle.total and entries")
    check(all(e.search.mode == "match" and e.fullUrl for e in bundle.entry), "entries have fullUrl and search.mode")
    # The client's date operators ($gte/$lte become `>=`/`<=`).
    ranged = Observation.where(
        struct={"subject": f"Patient/{pid}", "date": {"$gte": "2026-03-02", "$lte": "2026-03-03"}}
    ).perform_resources(srv)
    check(sorted(r.id for r in ranged) == sorted(obs_ids[1:3]), "search by date range ($gte/$lte)")
    ranged = Observation.where(
        struct={"subject": f"Patient/{pid}", "date": {"$and": ["ge2026-03-02", "lt2026-03-04"]}}
    ).perform_resources(srv)
    check(sorted(r.id for r in ranged) == sorted(obs_ids[1:3]), "search by date range (R4 prefixes)")
    pages = list(Observation.where(struct={"patient": pid, "_count": "3"}).perform_iter(srv))
    check(len(pages) == 2, f"paging follows the next link ({len(pages)} pages)")
    check(sum(len(b.entry or []) for b in pages) == 4, "all results over the pages")
    none = Observation.where(struct={"patient": pid, "code": "no-such-code"}).perform(srv)
    check(none.total == 0 and not none.entry, "an empty searchset Bundle")
    # The raw JSON of responses, against the R4 JSON rules.
    for path in [
        "metadata",
        f"Patient/{pid}",
        f"Patient/{pid}/_history",
        f"Observation?patient={pid}&_count=2",
        f"Observation?patient={pid}&code=no-such-code",
    ]:
        check_json_shape(srv.request_json(path), path)
    print("ok: raw responses follow the R4 JSON rules", flush=True)
    by_id = Patient.where(struct={"identifier": f"{CCCD_SYSTEM}|001088054321"}).perform_resources(srv)
    check([r.id for r in by_id] == [pid], "Patient search by CCCD identifier")

    # History.
    history = Bundle.read_from(f"Patient/{pid}/_history", srv)
    check(history.type == "history" and history.total == 2, "history Bundle of two versions")
    check([e.resource.meta.versionId for e in history.entry] == ["2", "1"], "history newest first")
    check([e.request.method for e in history.entry] == ["PUT", "POST"], "history entries carry the request")

    # Errors come back as OperationOutcome and the client raises.
    try:
        Patient.read("00000000-0000-0000-0000-000000000000", srv)
        raise AssertionError("reading an unknown id did not raise")
    except fhirserver.FHIRNotFoundException as e:
        oo = outcome_of(e.response, 404)
        check(oo.issue[0].code == "not-found", "unknown id: 404 not-found")
    try:
        Observation.where(struct={"no-such-param": "x"}).perform(srv)
        raise AssertionError("an unknown search parameter did not raise")
    except requests.HTTPError as e:
        oo = outcome_of(e.response, 400)
        check(oo.issue[0].code == "invalid", "unknown search parameter: 400 invalid")
    try:
        observation("00000000-0000-0000-0000-000000000000", HEART_RATE, "2026-03-05", 70).create(srv)
        raise AssertionError("a dangling reference did not raise")
    except requests.HTTPError as e:
        oo = outcome_of(e.response, 422)
        check(oo.issue[0].code == "not-found", "dangling reference: 422 not-found")
    anonymous = fhirserver.FHIRServer(None, base_uri=base)
    try:
        Patient.read(pid, anonymous)
        raise AssertionError("a read without a token did not raise")
    except fhirserver.FHIRUnauthorizedException as e:
        outcome_of(e.response, 401)


def main():
    base = os.environ.get("VTH_FHIR_BASE")
    token = os.environ.get("VTH_FHIR_TOKEN")
    if not base or not token:
        print("set VTH_FHIR_BASE and VTH_FHIR_TOKEN", file=sys.stderr)
        return 2
    try:
        run(base, token)
    except Exception:
        traceback.print_exc()
        return 1
    print("all fhirclient interop checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
