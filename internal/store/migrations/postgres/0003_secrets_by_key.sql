-- Re-encryption pages through one data key's secrets in primary-key order;
-- an index in that order keeps each page an index range, not a sort of
-- every row under the key.
DROP INDEX secrets_key_id;
CREATE INDEX secrets_key_id ON secrets (key_id, org_id, workspace_id, key);
