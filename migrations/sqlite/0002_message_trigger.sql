-- Storing a message moves its channel's `last_seq` and the sender's read pointer in the same
-- statement, so the writer can store a whole batch of sends with one multi-row INSERT (see
-- `insert_chunk` in app/src/messages/store.rs).
CREATE TRIGGER messages_advance_channel AFTER INSERT ON messages
BEGIN
    UPDATE channels SET last_seq = max(last_seq, NEW.seq) WHERE id = NEW.channel_id;
    UPDATE channel_members SET last_read_seq = max(last_read_seq, NEW.seq)
     WHERE channel_id = NEW.channel_id AND user_id = NEW.sender_id;
END;
