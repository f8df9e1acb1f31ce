//! Events become notifications, and notifications become emails: files in the mailbox,
//! or messages at an SMTP relay; each at most once.

use notifications::domain::{Kind, Status};
use platform::clock::now_ms;
use platform::inbox::{self, Outcome};
use test_support::Engine;

use crate::helpers::{
    TestApp, Transport, cancelled, confirmed, crlf, new_id, refunded, registered,
};

test_support::on_both_engines!(
    each_event_becomes_one_email_in_the_mailbox,
    emails_reach_the_smtp_relay_with_their_recipients,
    an_event_delivered_twice_makes_one_email,
    two_events_for_one_confirmation_make_one_email,
    an_order_email_waits_for_the_customers_address,
    an_address_that_cannot_receive_mail_fails_for_good,
    a_resend_after_a_crash_is_the_same_message,
    two_senders_never_send_one_email_twice,
    the_workers_send_without_being_driven,
    a_registration_mails_its_address_a_link_or_word_of_the_account,
);

/// Identity asks for a link to a new address, and for word to an address that has an
/// account; each reaches the address at once (no welcome is needed first).
async fn a_registration_mails_its_address_a_link_or_word_of_the_account(engine: Engine) {
    use contracts::messaging::identity::{RegistrationOutcome, RegistrationRequestedV1};
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (ada, bob) = (new_id(), new_id());
    let token = "Zm9yIGEgdGVzdCwgbm90IGEgcmVhbCB0b2tlbiBhdCBhbGw";
    app.deliver(&RegistrationRequestedV1 {
        user_id: ada.parse().expect("an id"),
        email: "ada@example.com".to_owned(),
        outcome: RegistrationOutcome::Confirm {
            token: token.to_owned(),
            expires_at_ms: now_ms() + 86_400_000,
        },
    })
    .await;
    app.deliver(&RegistrationRequestedV1 {
        user_id: bob.parse().expect("an id"),
        email: "bob@example.com".to_owned(),
        outcome: RegistrationOutcome::AlreadyRegistered,
    })
    .await;
    assert_eq!(app.send_due(now_ms()).await, 2);
    let sent = app.notifications().await;
    let kinds: Vec<(Kind, &str)> = sent
        .iter()
        .map(|n| (n.kind, n.customer_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::ConfirmAddress, ada.as_str()),
            (Kind::AlreadyRegistered, bob.as_str())
        ]
    );
    let mailbox = app.mailbox.clone().expect("a mailbox app");
    let link = test_support::mail::confirmation_link(&mailbox, "ada@example.com").await;
    assert_eq!(link, format!("http://127.0.0.1:8080/confirm?token={token}"));
    let word = app.mailbox_file(&sent[1].id).expect("written");
    assert_eq!(word.header("To").as_deref(), Some("bob@example.com"));
    assert!(
        word.body()
            .contains("sign in at http://127.0.0.1:8080/sign-in")
    );
    assert!(!word.body().contains("token"));
}

async fn each_event_becomes_one_email_in_the_mailbox(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (ada, order, other_order) = (new_id(), new_id(), new_id());
    // Long enough that the welcome's line goes quoted-printable.
    let address = "ada.augusta.king.countess.of.lovelace@analytical-engine.example.com";
    app.deliver(&registered(&ada, address)).await;
    app.deliver(&confirmed(&ada, &order)).await;
    app.deliver(&cancelled(&ada, &other_order, "payment_declined"))
        .await;
    app.deliver(&refunded(&ada, &order)).await;
    let queued = app.notifications().await;
    let kinds: Vec<Kind> = queued.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Welcome,
            Kind::OrderConfirmed,
            Kind::OrderCancelled,
            Kind::OrderRefunded
        ]
    );
    assert!(queued.iter().all(|n| n.status == Status::Pending));
    assert!(
        app.mailbox_files().is_empty(),
        "nothing is sent before the sender runs"
    );

    assert_eq!(app.send_due(now_ms()).await, 4);
    assert_eq!(app.send_due(now_ms()).await, 0, "each email goes once");
    let names = app.mailbox_files();
    assert_eq!(names.len(), 4, "{names:?}");
    for notification in app.notifications().await {
        assert_eq!(notification.status, Status::Sent);
        assert_eq!(notification.attempts, 1);
        let eml = app
            .mailbox_file(&notification.id)
            .expect("a file named by the notification's id");
        assert_eq!(eml.header("To").as_deref(), Some(address));
        assert_eq!(
            eml.header("From").as_deref(),
            Some("Bazaar <shop@bazaar.localhost>")
        );
        assert_eq!(
            eml.header("Message-ID"),
            Some(format!("<{}@bazaar.localhost>", notification.id))
        );
        assert_eq!(eml.header("Subject"), Some(notification.subject.clone()));
        assert_eq!(eml.body(), crlf(&notification.body));
        if notification.kind == Kind::Welcome {
            assert_eq!(
                eml.header("Content-Transfer-Encoding").as_deref(),
                Some("quoted-printable")
            );
        }
    }
    let confirmation = app
        .notifications()
        .await
        .into_iter()
        .find(|n| n.kind == Kind::OrderConfirmed)
        .expect("a confirmation");
    let body = app.mailbox_file(&confirmation.id).expect("written").body();
    assert!(
        body.contains("  2 x Enamel mug, 14.50 EUR each: 29.00 EUR\r\n"),
        "{body}"
    );
    assert!(
        body.contains("  1 x Teapot, 30.00 EUR each: 30.00 EUR\r\n"),
        "{body}"
    );
    assert!(body.contains("Total charged: 59.00 EUR\r\n"), "{body}");
    let number = contracts::orders::order_number(&order);
    assert!(body.contains(&format!("Order {number}\r\n")), "{body}");
    let cancellation = app.notifications().await.remove(2);
    assert!(cancellation.body.contains("Your payment was declined."));
    assert!(cancellation.body.contains("Nothing was charged."));
    let refund = app.notifications().await.remove(3);
    assert!(refund.body.contains("We have refunded 59.00 EUR"));
}

async fn emails_reach_the_smtp_relay_with_their_recipients(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    let (ada, bob, order) = (new_id(), new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    app.deliver(&registered(&bob, "bob@example.com")).await;
    app.deliver(&confirmed(&bob, &order)).await;
    assert_eq!(app.send_due(now_ms()).await, 3);
    let messages = app.sink().messages();
    assert_eq!(messages.len(), 3);
    for message in &messages {
        assert_eq!(message.from, "shop@bazaar.localhost");
    }
    let recipients: Vec<&[String]> = messages.iter().map(|m| m.recipients.as_slice()).collect();
    assert_eq!(
        recipients,
        [
            ["ada@example.com".to_owned()],
            ["bob@example.com".to_owned()],
            ["bob@example.com".to_owned()]
        ]
    );
    let stored = app.notifications().await;
    for (message, notification) in messages.iter().zip(&stored) {
        assert_eq!(
            message.header("Message-ID"),
            Some(format!("<{}@bazaar.localhost>", notification.id))
        );
        assert_eq!(
            message.header("Subject"),
            Some(notification.subject.clone())
        );
        assert_eq!(
            message.body().trim_end(),
            crlf(&notification.body).trim_end()
        );
    }
    assert!(messages[2].body().contains("Total charged: 59.00 EUR"));
    assert_eq!(app.send_due(now_ms()).await, 0);
    assert_eq!(app.sink().messages().len(), 3, "nothing is sent twice");
}

async fn an_event_delivered_twice_makes_one_email(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (ada, order) = (new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    let envelope = app.deliver(&confirmed(&ada, &order)).await;
    let handler = notifications::events::Events::default();
    let subscription = notifications::events::order_events().name;
    // Redelivered to the same subscription: the inbox recognises it.
    let again = inbox::apply(&app.db, &subscription, &envelope, &handler)
        .await
        .expect("applied");
    assert_eq!(again, Outcome::Duplicate);
    // Even past the inbox (a record lost, a second subscription), the event's id is
    // already taken.
    let past_the_inbox = inbox::apply(&app.db, "another-subscription", &envelope, &handler)
        .await
        .expect("applied");
    assert_eq!(past_the_inbox, Outcome::Applied);
    assert_eq!(app.notifications().await.len(), 2);
    assert_eq!(app.send_due(now_ms()).await, 2);
    assert_eq!(app.mailbox_files().len(), 2);
}

async fn two_events_for_one_confirmation_make_one_email(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    let (ada, order) = (new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    let first = app.deliver(&confirmed(&ada, &order)).await;
    let second = app.deliver(&confirmed(&ada, &order)).await;
    assert_ne!(first.id, second.id, "two different events");
    // A second registration event for the same account does not greet twice either.
    app.deliver(&registered(&ada, "ada@example.com")).await;
    let stored = app.notifications().await;
    assert_eq!(stored.len(), 2, "one welcome, one confirmation");
    assert_eq!(app.send_due(now_ms()).await, 2);
    let confirmations = app
        .sink()
        .messages()
        .iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("is confirmed"))
        })
        .count();
    assert_eq!(confirmations, 1);
    let snapshot = notifications::audit::snapshot(&app.db)
        .await
        .expect("a snapshot");
    assert_eq!(snapshot.confirmations_of(&order), 1);
}

async fn an_order_email_waits_for_the_customers_address(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    let (ada, order) = (new_id(), new_id());
    app.deliver(&confirmed(&ada, &order)).await;
    let start = now_ms();
    assert_eq!(app.send_due(start).await, 0);
    assert_eq!(app.send_due(start + 3_600_000).await, 0);
    let waiting = app.notifications().await.remove(0);
    assert_eq!(waiting.status, Status::Pending);
    assert_eq!(
        waiting.attempts, 0,
        "waiting for an address is not a failure"
    );
    assert_eq!(waiting.last_error, None);
    assert_eq!(app.sink().connections(), 0, "the relay was not even called");

    app.deliver(&registered(&ada, "ada@example.com")).await;
    assert_eq!(app.send_due(now_ms()).await, 2);
    let messages = app.sink().messages();
    assert_eq!(messages.len(), 2);
    assert!(
        messages
            .iter()
            .all(|m| m.recipients == ["ada@example.com".to_owned()])
    );
    let sent = app.notifications().await;
    assert!(
        sent.iter()
            .all(|n| n.status == Status::Sent && n.attempts == 1)
    );
}

async fn an_address_that_cannot_receive_mail_fails_for_good(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (nobody, ada) = (new_id(), new_id());
    app.deliver(&registered(&nobody, "not an address")).await;
    app.deliver(&registered(&ada, "ada@example.com")).await;
    assert_eq!(app.send_due(now_ms()).await, 1, "the good one still goes");
    let stored = app.notifications().await;
    assert_eq!(stored[0].status, Status::Failed);
    assert_eq!(stored[0].attempts, 1);
    assert!(
        stored[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("not an email address")),
        "{:?}",
        stored[0].last_error
    );
    assert_eq!(stored[1].status, Status::Sent);
    assert_eq!(
        app.send_due(now_ms() + 3_600_000).await,
        0,
        "never tried again"
    );
    assert_eq!(app.mailbox_files().len(), 1);
}

async fn a_resend_after_a_crash_is_the_same_message(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    app.deliver(&registered(&new_id(), "ada@example.com")).await;
    assert_eq!(app.send_due(now_ms()).await, 1);
    let notification = app.notifications().await.remove(0);
    let written = app.mailbox_file(&notification.id).expect("written").0;
    // The process died after the mailbox took the email but before it was marked sent.
    sqlx::query("UPDATE notifications SET status = 'pending', sent_at_ms = NULL")
        .execute(app.db.pool())
        .await
        .expect("rewound");
    assert_eq!(app.send_due(now_ms()).await, 1);
    assert_eq!(app.mailbox_files().len(), 1, "not written twice");
    assert_eq!(app.mailbox_file(&notification.id).expect("kept").0, written);
    assert_eq!(app.notifications().await[0].status, Status::Sent);

    // Through a relay, the same email carries the same Message-ID each time.
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    app.deliver(&registered(&new_id(), "ada@example.com")).await;
    assert_eq!(app.send_due(now_ms()).await, 1);
    sqlx::query("UPDATE notifications SET status = 'pending', sent_at_ms = NULL")
        .execute(app.db.pool())
        .await
        .expect("rewound");
    assert_eq!(app.send_due(now_ms()).await, 1);
    let messages = app.sink().messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].data, messages[1].data,
        "a recognisable duplicate"
    );
}

async fn two_senders_never_send_one_email_twice(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    for n in 0..20 {
        app.deliver(&registered(&new_id(), &format!("c{n}@example.com")))
            .await;
    }
    // A second replica: its own pool and mailer, the same database and relay.
    let replica_db = platform::db::Database::connect(
        app.config.database_url.as_ref().expect("a URL"),
        platform::db::PoolSettings::default(),
    )
    .await
    .expect("connects");
    let replica = notifications::new_sender(&app.config, replica_db).expect("a sender");
    let now = now_ms();
    let (mine, theirs) = tokio::join!(app.sender.send_due(now), replica.send_due(now));
    assert_eq!(mine.expect("a round") + theirs.expect("a round"), 20);
    let messages = app.sink().messages();
    let ids: std::collections::BTreeSet<_> = messages
        .iter()
        .map(|m| m.header("Message-ID").expect("an id"))
        .collect();
    assert_eq!((messages.len(), ids.len()), (20, 20));
}

async fn the_workers_send_without_being_driven(engine: Engine) {
    let app = TestApp::spawn_running(engine).await;
    let ada = new_id();
    let envelope = outbox_envelope(&registered(&ada, "ada@example.com"));
    // Only publish: the service's own consumer and sender do the rest.
    app.publish(&envelope).await;
    let sent = "the workers sending the welcome email";
    test_support::eventually(sent, std::time::Duration::from_secs(10), || async {
        let written = app.mailbox_files().len();
        let sent = app.notifications().await;
        let statuses: Vec<&str> = sent.iter().map(|n| n.status.as_str()).collect();
        let done = written == 1 && statuses == ["sent"];
        done.then_some(())
            .ok_or(format!("{written} files, notifications {statuses:?}"))
    })
    .await;
}

fn outbox_envelope<M: contracts::messaging::Message>(
    message: &M,
) -> contracts::messaging::Envelope {
    platform::outbox::envelope("test", message, &platform::outbox::Origin::default())
        .expect("an envelope")
}
