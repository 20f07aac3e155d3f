-- Date searches look dates up by range instead of walking every resource
-- of the type: one index per bound, since a FHIR date prefix compares the
-- parameter with the start or the end of the resource's range. Partial
-- (date rows only), so that no other search picks them over the index on
-- (resource_type, id).
CREATE INDEX fhir_search_index_date_start ON fhir_search_index (resource_type, date_start) WHERE kind = 'date';
CREATE INDEX fhir_search_index_date_end ON fhir_search_index (resource_type, date_end) WHERE kind = 'date';
