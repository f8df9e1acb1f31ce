//! The catalog's use cases. Each write is one transaction that changes the tables and
//! puts the event announcing it in the outbox, so neither happens without the other;
//! the relay is woken after the commit. Reads go straight to the [`Store`].

use anyhow::Context as _;
use contracts::messaging::Message;
use contracts::messaging::catalog::{ProductCreatedV1, ProductDeletedV1, ProductPriceChangedV1};
use platform::clock::now_ms;
use platform::db::Database;
use platform::outbox::{self, Origin, Waker};
use sqlx::AnyConnection;

use crate::domain::{Category, CategoryPatch, Product, ProductPatch, ProductRef, Slug};
use crate::store::{self, Store, WriteError};

/// What the handlers work with: the reads, and the database and relay the writes use.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The reads.
    pub store: Store,
    db: Database,
    relay: Waker,
}

impl Catalog {
    /// The catalog over `db`, which must be migrated; `relay` is woken after each
    /// commit that wrote to the outbox.
    pub fn new(db: Database, relay: Waker) -> Self {
        Self {
            store: Store::new(db.clone()),
            db,
            relay,
        }
    }
}

/// Writes `message` to the outbox, in the caller's transaction.
async fn announce<M: Message>(
    connection: &mut AnyConnection,
    message: &M,
    origin: &Origin,
) -> anyhow::Result<()> {
    outbox::send(connection, crate::NAME, message, origin).await
}

fn created(product: &Product) -> ProductCreatedV1 {
    ProductCreatedV1 {
        product_id: product.id,
        slug: product.slug.as_str().to_owned(),
        name: product.name.clone(),
        category: product.category.as_str().to_owned(),
        price: product.price,
    }
}

/// Adds `product` in its category and announces it (`ProductCreated`); `origin` is the
/// request that caused it.
pub async fn create_product(
    catalog: &Catalog,
    product: &Product,
    origin: &Origin,
) -> Result<(), WriteError> {
    let mut tx = catalog.db.begin().await.context("starting a create")?;
    if !store::insert_product(&mut tx, product, now_ms()).await? {
        return Err(WriteError::UnknownCategory(product.category.clone()));
    }
    announce(&mut tx, &created(product), origin).await?;
    tx.commit().await.context("committing a create")?;
    catalog.relay.wake();
    Ok(())
}

/// Changes the product with this id or slug; `None` if there is none. A price change is
/// announced (`ProductPriceChanged`).
pub async fn update_product(
    catalog: &Catalog,
    reference: &ProductRef,
    patch: &ProductPatch,
    origin: &Origin,
) -> Result<Option<Product>, WriteError> {
    let now = now_ms();
    let mut tx = catalog.db.begin().await.context("starting an update")?;
    let Some(current) = store::lock_product(&mut tx, reference, now).await? else {
        return Ok(None);
    };
    let old_price = current.price;
    let product = patch.apply(current);
    if !store::write_product(&mut tx, &product, now).await? {
        return Err(WriteError::UnknownCategory(product.category));
    }
    if product.price != old_price {
        let changed = ProductPriceChangedV1 {
            product_id: product.id,
            old_price,
            new_price: product.price,
        };
        announce(&mut tx, &changed, origin).await?;
    }
    tx.commit().await.context("committing an update")?;
    catalog.relay.wake();
    Ok(Some(product))
}

/// Removes the product with this id or slug and announces it (`ProductDeleted`);
/// `false` if there was none.
pub async fn delete_product(
    catalog: &Catalog,
    reference: &ProductRef,
    origin: &Origin,
) -> anyhow::Result<bool> {
    let mut tx = catalog.db.begin().await.context("starting a delete")?;
    let Some(product_id) = store::delete_product(&mut tx, reference).await? else {
        return Ok(false);
    };
    announce(&mut tx, &ProductDeletedV1 { product_id }, origin).await?;
    tx.commit().await.context("committing a delete")?;
    catalog.relay.wake();
    Ok(true)
}

/// Adds `category` after every existing one.
pub async fn create_category(catalog: &Catalog, category: &Category) -> Result<(), WriteError> {
    let mut connection = catalog.db.pool().acquire().await.context("a connection")?;
    store::insert_category(&mut connection, category).await
}

/// Changes the category with this slug; `None` if there is none.
pub async fn update_category(
    catalog: &Catalog,
    slug: &Slug,
    patch: &CategoryPatch,
) -> anyhow::Result<Option<Category>> {
    let mut connection = catalog.db.pool().acquire().await.context("a connection")?;
    store::update_category(&mut connection, slug, patch).await
}

/// Removes the category with this slug; `false` if there was none, refused while
/// products are in it.
pub async fn delete_category(catalog: &Catalog, slug: &Slug) -> Result<bool, WriteError> {
    let mut connection = catalog.db.pool().acquire().await.context("a connection")?;
    store::delete_category(&mut connection, slug).await
}

/// Loads a named data set once, announcing each product like any other
/// (`ProductCreated`), so other services learn of them the same way: returns `false` if
/// it was applied before (by this or another replica), leaving the tables untouched.
pub async fn seed(
    catalog: &Catalog,
    name: &str,
    categories: &[Category],
    products: &[Product],
) -> anyhow::Result<bool> {
    let now = now_ms();
    let origin = Origin {
        correlation_id: format!("seed:{name}"),
        ..Origin::default()
    };
    let mut tx = catalog.db.begin().await?;
    if !store::claim_seed(&mut tx, name, now).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    let mut category_ids = std::collections::BTreeMap::new();
    for (position, category) in categories.iter().enumerate() {
        let id = store::insert_seeded_category(&mut tx, category, position).await?;
        category_ids.insert(category.slug.clone(), id);
    }
    for product in products {
        let category_id = category_ids
            .get(&product.category)
            .with_context(|| format!("product {} has no category", product.slug.as_str()))?;
        store::insert_seeded_product(&mut tx, product, category_id, now).await?;
        announce(&mut tx, &created(product), &origin).await?;
    }
    tx.commit().await?;
    catalog.relay.wake();
    Ok(true)
}
