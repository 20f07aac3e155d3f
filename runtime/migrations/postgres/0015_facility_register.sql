-- The network register (docs/operations.md, "The network register"):
-- facilities with their BHYT code, technical level, place and status, and
-- vendors with their tax code, contact and status. Old rows keep working:
-- every new column is nullable or has a default.
ALTER TABLE hospitals ADD COLUMN facility_code TEXT;
ALTER TABLE hospitals ADD COLUMN level TEXT CHECK (level IN ('primary', 'basic', 'specialised'));
ALTER TABLE hospitals ADD COLUMN province_code TEXT;
ALTER TABLE hospitals ADD COLUMN commune TEXT;
ALTER TABLE hospitals ADD COLUMN ownership TEXT CHECK (ownership IN ('public', 'private'));
-- No foreign key: an import may name a parent later in the same file; the
-- register checks parents itself.
ALTER TABLE hospitals ADD COLUMN parent_id TEXT;
ALTER TABLE hospitals ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
ALTER TABLE hospitals ADD COLUMN updated_at BIGINT;
CREATE UNIQUE INDEX hospitals_facility_code ON hospitals (facility_code);

ALTER TABLE vendors ADD COLUMN tax_code TEXT;
ALTER TABLE vendors ADD COLUMN contact_name TEXT;
ALTER TABLE vendors ADD COLUMN contact_email TEXT;
ALTER TABLE vendors ADD COLUMN contact_phone TEXT;
ALTER TABLE vendors ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
CREATE UNIQUE INDEX vendors_tax_code ON vendors (tax_code);
