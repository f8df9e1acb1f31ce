//! The catalog's SQL, portable between SQLite and PostgreSQL: reads on the pool through
//! [`Store`], writes as functions on the caller's transaction, which [`crate::ops`]
//! owns with the events it writes.

use anyhow::Context as _;
use contracts::{Currency, Money};
use platform::db::Database;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor, Row as _};

use crate::domain::{
    Category, CategoryPatch, Cursor, Product, ProductId, ProductQuery, ProductRef, Slug, SortKey,
    SortValue,
};

/// Reads of the catalog's tables.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

/// One page of a product listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The products, in order.
    pub items: Vec<Product>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

/// Why a write was refused. Every variant but `Other` is the caller's doing.
///
/// Conflicts are found by the database's own constraints (unique slugs, the foreign key
/// from products to categories), so two admins racing each other get a clean refusal
/// rather than a check that passed for both.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Another product, or another category, already has this slug.
    #[error("the slug {:?} is taken", .0.as_str())]
    SlugTaken(Slug),
    /// The product names a category that does not exist.
    #[error("there is no category {:?}", .0.as_str())]
    UnknownCategory(Slug),
    /// The category cannot be deleted while products are in it.
    #[error("the category {:?} still has products", .0.as_str())]
    CategoryInUse(Slug),
    /// The database failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The columns `product_from_row` reads, as a literal so `concat!` can extend it.
macro_rules! select_product {
    () => {
        "SELECT p.id, p.slug, p.name, p.description, c.slug AS category, \
         p.price_minor, p.currency, p.image, p.attributes \
         FROM products p JOIN categories c ON c.id = p.category_id"
    };
}

const SELECT_PRODUCT: &str = select_product!();

impl Store {
    /// The store over `db`, which must be migrated.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// One page of products matching `query`.
    pub async fn list_products(&self, query: &ProductQuery) -> anyhow::Result<Page> {
        let column = match query.sort.key {
            SortKey::Name => "p.name",
            SortKey::Price => "p.price_minor",
        };
        let (direction, comparison) = if query.sort.descending {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        // Every fragment spliced in is one of the constants above; user input is bound.
        let sql = format!(
            "{SELECT_PRODUCT} \
             WHERE ($1 IS NULL OR c.slug = $1) \
               AND ($2 IS NULL OR p.search_text LIKE $2 ESCAPE '\\') \
               AND ($3 IS NULL OR p.search_text LIKE $3 ESCAPE '\\') \
               AND ($4 IS NULL OR p.search_text LIKE $4 ESCAPE '\\') \
               AND ($5 IS NULL OR p.search_text LIKE $5 ESCAPE '\\') \
               AND ($6 IS NULL OR p.search_text LIKE $6 ESCAPE '\\') \
               AND ($8 IS NULL OR ({column}, p.id) {comparison} ($7, $8)) \
             ORDER BY {column} {direction}, p.id {direction} \
             LIMIT $9"
        );
        let words = query
            .search
            .as_ref()
            .map_or(&[][..], |search| search.words());
        let pattern = |index: usize| words.get(index).map(|word| like_pattern(word));
        let mut statement = sqlx::query(AssertSqlSafe(sql))
            .bind(query.category.as_ref().map(|slug| slug.as_str().to_owned()))
            .bind(pattern(0))
            .bind(pattern(1))
            .bind(pattern(2))
            .bind(pattern(3))
            .bind(pattern(4));
        statement = match query.after.as_ref().map(|cursor| &cursor.value) {
            Some(SortValue::Name(name)) => statement.bind(Some(name.clone())),
            Some(SortValue::Price(price)) => statement.bind(Some(*price)),
            None => match query.sort.key {
                SortKey::Name => statement.bind(None::<String>),
                SortKey::Price => statement.bind(None::<i64>),
            },
        };
        // One extra row tells whether another page follows.
        let limit = query.limit.get();
        let rows = statement
            .bind(query.after.as_ref().map(|cursor| cursor.id.to_string()))
            .bind(i64::from(limit) + 1)
            .fetch_all(self.db.pool())
            .await
            .context("listing products")?;
        let mut items = rows
            .iter()
            .map(product_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| Cursor::after(last, query.sort))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// The product with this id or slug.
    pub async fn product(&self, reference: &ProductRef) -> anyhow::Result<Option<Product>> {
        fetch_product(self.db.pool(), reference).await
    }

    /// The products with these ids; unknown ids are left out.
    pub async fn products_by_ids(&self, ids: &[ProductId]) -> anyhow::Result<Vec<Product>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|index| format!("${index}")).collect();
        // Only numbered placeholders are spliced in; the ids themselves are bound.
        let sql = format!(
            "{SELECT_PRODUCT} WHERE p.id IN ({})",
            placeholders.join(", ")
        );
        let mut statement = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            statement = statement.bind(id.to_string());
        }
        let rows = statement
            .fetch_all(self.db.pool())
            .await
            .context("reading products by id")?;
        rows.iter().map(product_from_row).collect()
    }

    /// Every category, in display order.
    pub async fn categories(&self) -> anyhow::Result<Vec<Category>> {
        let rows =
            sqlx::query("SELECT slug, name, description FROM categories ORDER BY position, slug")
                .fetch_all(self.db.pool())
                .await
                .context("listing categories")?;
        rows.iter().map(category_from_row).collect()
    }
}

/// Adds `product` in its category; `false` if there is no such category (the category
/// is looked up in the same statement, so "no such category" and the insert are one
/// atomic step).
pub async fn insert_product(
    connection: &mut AnyConnection,
    product: &Product,
    now: i64,
) -> Result<bool, WriteError> {
    let statement = sqlx::query(
        "INSERT INTO products (id, slug, name, description, category_id, price_minor, \
         currency, image, attributes, search_text, created_at, updated_at) \
         SELECT $1, $2, $3, $4, c.id, $5, $6, $7, $8, $9, $10, $10 \
         FROM categories c WHERE c.slug = $11",
    );
    let inserted = bind_product(statement, product, now)?
        .execute(connection)
        .await
        .map_err(|error| product_write_error(error, product))?
        .rows_affected();
    Ok(inserted > 0)
}

/// The product with this id or slug, locked until the transaction ends; `None` if there
/// is none.
///
/// Writing the row first locks it (a row lock on PostgreSQL, the write lock on SQLite),
/// so a concurrent update cannot slip in between this read and the caller's write, and
/// `search_text` always matches the name and description that are stored.
pub async fn lock_product(
    connection: &mut AnyConnection,
    reference: &ProductRef,
    now: i64,
) -> anyhow::Result<Option<Product>> {
    let touch = match reference {
        ProductRef::Id(_) => "UPDATE products SET updated_at = $1 WHERE id = $2",
        ProductRef::Slug(_) => "UPDATE products SET updated_at = $1 WHERE slug = $2",
    };
    let touched = sqlx::query(touch)
        .bind(now)
        .bind(reference_key(reference))
        .execute(&mut *connection)
        .await
        .context("locking a product")?
        .rows_affected();
    if touched == 0 {
        return Ok(None);
    }
    let product = fetch_product(connection, reference)
        .await?
        .context("a locked product disappeared")?;
    Ok(Some(product))
}

/// Stores every field of `product`, found by its id; `false` if its category does not
/// exist.
pub async fn write_product(
    connection: &mut AnyConnection,
    product: &Product,
    now: i64,
) -> Result<bool, WriteError> {
    let statement = sqlx::query(
        "UPDATE products SET slug = $2, name = $3, description = $4, category_id = c.id, \
         price_minor = $5, currency = $6, image = $7, attributes = $8, search_text = $9, \
         updated_at = $10 \
         FROM categories c WHERE c.slug = $11 AND products.id = $1",
    );
    let updated = bind_product(statement, product, now)?
        .execute(connection)
        .await
        .map_err(|error| product_write_error(error, product))?
        .rows_affected();
    Ok(updated > 0)
}

/// Removes the product with this id or slug; its id, or `None` if there was none.
pub async fn delete_product(
    connection: &mut AnyConnection,
    reference: &ProductRef,
) -> anyhow::Result<Option<ProductId>> {
    let sql = match reference {
        ProductRef::Id(_) => "DELETE FROM products WHERE id = $1 RETURNING id",
        ProductRef::Slug(_) => "DELETE FROM products WHERE slug = $1 RETURNING id",
    };
    let deleted = sqlx::query(sql)
        .bind(reference_key(reference))
        .fetch_optional(connection)
        .await
        .context("deleting a product")?;
    deleted
        .map(|row| stored_id(row.try_get("id").context("a deleted product's id")?))
        .transpose()
}

/// Adds `category` after every existing one in display order.
pub async fn insert_category(
    connection: &mut AnyConnection,
    category: &Category,
) -> Result<(), WriteError> {
    // Two categories created at the same moment may share a position; the listing
    // then orders them by slug, which is harmless.
    sqlx::query(
        "INSERT INTO categories (id, slug, name, description, position) \
         VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(position), -1) + 1 FROM categories))",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(category.slug.as_str().to_owned())
    .bind(category.name.clone())
    .bind(category.description.clone())
    .execute(connection)
    .await
    .map_err(|error| match error_kind(&error) {
        Some(ErrorKind::UniqueViolation) => WriteError::SlugTaken(category.slug.clone()),
        _ => WriteError::Other(anyhow::Error::new(error).context("creating a category")),
    })?;
    Ok(())
}

/// Changes the category with this slug; `None` if there is none.
pub async fn update_category(
    connection: &mut AnyConnection,
    slug: &Slug,
    patch: &CategoryPatch,
) -> anyhow::Result<Option<Category>> {
    // Nothing is derived from a category's fields, so absent fields can be kept in SQL
    // and one statement suffices.
    let row = sqlx::query(
        "UPDATE categories SET name = COALESCE($2, name), \
         description = COALESCE($3, description) \
         WHERE slug = $1 RETURNING slug, name, description",
    )
    .bind(slug.as_str().to_owned())
    .bind(patch.name.clone())
    .bind(patch.description.clone())
    .fetch_optional(connection)
    .await
    .context("updating a category")?;
    row.as_ref().map(category_from_row).transpose()
}

/// Removes the category with this slug; `false` if there was none.
pub async fn delete_category(
    connection: &mut AnyConnection,
    slug: &Slug,
) -> Result<bool, WriteError> {
    // The foreign key from products refuses the delete while any product is in the
    // category, including one added a moment ago by another request.
    let deleted = sqlx::query("DELETE FROM categories WHERE slug = $1")
        .bind(slug.as_str().to_owned())
        .execute(connection)
        .await
        .map_err(|error| match error_kind(&error) {
            Some(ErrorKind::ForeignKeyViolation) => WriteError::CategoryInUse(slug.clone()),
            _ => WriteError::Other(anyhow::Error::new(error).context("deleting a category")),
        })?
        .rows_affected();
    Ok(deleted > 0)
}

/// Records that the data set `name` is being loaded; `false` if it was loaded before
/// (by this or another replica).
pub async fn claim_seed(
    connection: &mut AnyConnection,
    name: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO seeds (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(now)
    .execute(connection)
    .await
    .context("claiming a seed")?
    .rows_affected();
    Ok(claimed > 0)
}

/// Adds a seeded category at `position`; returns its row id.
pub async fn insert_seeded_category(
    connection: &mut AnyConnection,
    category: &Category,
    position: usize,
) -> anyhow::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO categories (id, slug, name, description, position) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.clone())
    .bind(category.slug.as_str().to_owned())
    .bind(category.name.clone())
    .bind(category.description.clone())
    .bind(i64::try_from(position)?)
    .execute(connection)
    .await
    .with_context(|| format!("seeding category {}", category.slug.as_str()))?;
    Ok(id)
}

/// Adds a seeded product in the category whose row id is `category_id`.
pub async fn insert_seeded_product(
    connection: &mut AnyConnection,
    product: &Product,
    category_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO products (id, slug, name, description, category_id, price_minor, \
         currency, image, attributes, search_text, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(product.id.to_string())
    .bind(product.slug.as_str().to_owned())
    .bind(product.name.clone())
    .bind(product.description.clone())
    .bind(category_id.to_owned())
    .bind(product.price.amount_minor)
    .bind(product.price.currency.as_str().to_owned())
    .bind(product.image.clone())
    .bind(serde_json::to_string(&product.attributes)?)
    .bind(product.search_text())
    .bind(now)
    .execute(connection)
    .await
    .with_context(|| format!("seeding product {}", product.slug.as_str()))?;
    Ok(())
}

/// A LIKE pattern matching `word` anywhere, with LIKE's wildcards in it taken literally.
fn like_pattern(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The product with this id or slug, read through `executor` (the pool, or a transaction).
async fn fetch_product<'e, E>(
    executor: E,
    reference: &ProductRef,
) -> anyhow::Result<Option<Product>>
where
    E: Executor<'e, Database = Any>,
{
    let sql = match reference {
        ProductRef::Id(_) => concat!(select_product!(), " WHERE p.id = $1"),
        ProductRef::Slug(_) => concat!(select_product!(), " WHERE p.slug = $1"),
    };
    let row = sqlx::query(sql)
        .bind(reference_key(reference))
        .fetch_optional(executor)
        .await
        .context("reading a product")?;
    row.as_ref().map(product_from_row).transpose()
}

/// The value a product reference is looked up by, in the column its variant names.
fn reference_key(reference: &ProductRef) -> String {
    match reference {
        ProductRef::Id(id) => id.to_string(),
        ProductRef::Slug(slug) => slug.as_str().to_owned(),
    }
}

/// What a constraint violation on writing `product` means to the caller.
fn product_write_error(error: sqlx::Error, product: &Product) -> WriteError {
    match error_kind(&error) {
        // The id is fresh (or unchanged), so the only unique column that can clash is the slug.
        Some(ErrorKind::UniqueViolation) => WriteError::SlugTaken(product.slug.clone()),
        // The category was found, then deleted before this write committed.
        Some(ErrorKind::ForeignKeyViolation) => {
            WriteError::UnknownCategory(product.category.clone())
        }
        _ => WriteError::Other(anyhow::Error::new(error).context("writing a product")),
    }
}

/// The kind of a database error; both engines' drivers map their codes to the same kinds.
fn error_kind(error: &sqlx::Error) -> Option<ErrorKind> {
    error.as_database_error().map(|error| error.kind())
}

fn category_from_row(row: &AnyRow) -> anyhow::Result<Category> {
    Ok(Category {
        slug: slug_column(row, "slug")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
    })
}

/// Binds `$1` to `$11` of the product writes, in their order: id, slug, name,
/// description, amount, currency, image, attributes, search text, the time, and the
/// category's slug.
fn bind_product<'q>(
    statement: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    product: &Product,
    now: i64,
) -> anyhow::Result<sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>> {
    Ok(statement
        .bind(product.id.to_string())
        .bind(product.slug.as_str().to_owned())
        .bind(product.name.clone())
        .bind(product.description.clone())
        .bind(product.price.amount_minor)
        .bind(product.price.currency.as_str().to_owned())
        .bind(product.image.clone())
        .bind(serde_json::to_string(&product.attributes).context("encoding attributes")?)
        .bind(product.search_text())
        .bind(now)
        .bind(product.category.as_str().to_owned()))
}

fn product_from_row(row: &AnyRow) -> anyhow::Result<Product> {
    let id: String = row.try_get("id")?;
    let currency: String = row.try_get("currency")?;
    let attributes: String = row.try_get("attributes")?;
    Ok(Product {
        id: stored_id(id)?,
        slug: slug_column(row, "slug")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        category: slug_column(row, "category")?,
        price: Money::new(row.try_get("price_minor")?, Currency::parse(&currency)?),
        image: row.try_get("image")?,
        attributes: serde_json::from_str(&attributes).context("stored product attributes")?,
    })
}

fn slug_column(row: &AnyRow, column: &str) -> anyhow::Result<Slug> {
    let text: String = row.try_get(column)?;
    Slug::parse(&text).map_err(|reason| anyhow::anyhow!("stored slug {text:?}: {reason}"))
}

/// The id of a stored product, which the catalog wrote itself.
fn stored_id(text: String) -> anyhow::Result<ProductId> {
    ProductId::parse(&text).with_context(|| format!("stored product id {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_words_are_literal() {
        assert_eq!(like_pattern("100%"), "%100\\%%");
        assert_eq!(like_pattern("a_b"), "%a\\_b%");
        assert_eq!(like_pattern("c:\\"), "%c:\\\\%");
    }
}
