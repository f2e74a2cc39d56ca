//! Frees large values on a helper thread. Dropping the model a full load replaced, or
//! the objects of a large file that changed, takes longer than patching what changed,
//! and nothing waits for that memory.

use std::any::Any;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

type Garbage = Box<dyn Any + Send>;

fn bin() -> Option<&'static Mutex<Sender<Garbage>>> {
    static BIN: OnceLock<Option<Mutex<Sender<Garbage>>>> = OnceLock::new();
    BIN.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Garbage>();
        std::thread::Builder::new()
            .name("reclaim".to_owned())
            .spawn(move || receiver.into_iter().for_each(drop))
            .ok()
            .map(|_| Mutex::new(sender))
    })
    .as_ref()
}

/// Drops `value` on the helper thread, or here if there is none.
pub fn later<T: Send + 'static>(value: T) {
    let value: Garbage = Box::new(value);
    let Some(bin) = bin() else {
        return;
    };
    let sender = bin.lock().unwrap_or_else(|e| e.into_inner());
    // A send fails only when the thread is gone; the value is then dropped here.
    let _ = sender.send(value);
}
