-- Box supervision: which replica watches each workspace's box, until when.
-- A replica renews its leases while it lives; a box whose lease expired is
-- taken over by a replica that can see it (its node, see provision.Noder).
CREATE TABLE box_supervision (
    workspace_id TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    until        BIGINT NOT NULL
);
CREATE INDEX box_supervision_owner ON box_supervision (owner);
