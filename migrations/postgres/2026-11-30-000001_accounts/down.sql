DROP TABLE verification_codes;
DROP INDEX users_phone_number;
ALTER TABLE users DROP COLUMN phone_verified_at;
ALTER TABLE users DROP COLUMN phone_number;
