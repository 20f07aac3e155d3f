-- Health records: FHIR R4 resources as JSON text, owned by the hospital that
-- wrote them. `fhir_resources` holds each resource's current version,
-- `fhir_history` every version ever written (the current one included), and
-- `fhir_search_index` the identifiers, codes and dates searched on.
CREATE TABLE fhir_resources (
    resource_type TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    hospital_id TEXT NOT NULL REFERENCES hospitals (id),
    patient_ref TEXT COLLATE "C",
    content TEXT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX fhir_resources_patient ON fhir_resources (hospital_id, patient_ref);
CREATE INDEX fhir_resources_updated ON fhir_resources (hospital_id, resource_type, last_updated);

CREATE TABLE fhir_history (
    resource_type TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    hospital_id TEXT NOT NULL REFERENCES hospitals (id),
    patient_ref TEXT COLLATE "C",
    content TEXT NOT NULL,
    written_by TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

-- kind: 'identifier' (system|value), 'code' (system|code) or 'date'
-- (the instant range [date_start, date_end] in ms since the epoch).
CREATE TABLE fhir_search_index (
    resource_type TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('identifier', 'code', 'date')),
    system TEXT COLLATE "C" NOT NULL DEFAULT '',
    value TEXT COLLATE "C" NOT NULL DEFAULT '',
    date_start BIGINT,
    date_end BIGINT
);
CREATE INDEX fhir_search_index_value ON fhir_search_index (kind, value);
CREATE INDEX fhir_search_index_resource ON fhir_search_index (resource_type, id);
