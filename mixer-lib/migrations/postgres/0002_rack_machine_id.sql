-- A rack of the reference names itself by machine id only: its heartbeats find it by this
-- index, not by reading every rack.

CREATE INDEX racks_machine_id ON racks (machine_id);
