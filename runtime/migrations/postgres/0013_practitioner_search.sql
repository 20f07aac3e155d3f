-- The practitioner directory's search (`identity.search-practitioners`):
-- each person's name and specialty in lower case without Vietnamese tone
-- marks ("nguyen" finds "Nguyễn"), written with the user (older rows are
-- filled when the identity service starts).
ALTER TABLE identity_users ADD COLUMN name_folded TEXT;
ALTER TABLE identity_users ADD COLUMN specialty_folded TEXT;
