-- Storing a message moves its channel's `last_seq` and the sender's read pointer inside the
-- same INSERT statement, so a send is one statement: the writer stores a batch of sends in one
-- transaction with one round trip each (see `MessageStore::insert_messages`).
CREATE TRIGGER messages_advance_channel AFTER INSERT ON messages
BEGIN
    UPDATE channels SET last_seq = NEW.seq WHERE id = NEW.channel_id;
    UPDATE channel_members SET last_read_seq = max(last_read_seq, NEW.seq)
     WHERE channel_id = NEW.channel_id AND user_id = NEW.sender_id;
END;
