//! `library.Library` (proto/library.proto): the grpc-gateway plugin's demo and test service. Its
//! answers echo what arrived, so a JSON client through the proxy can see every field that the
//! transcoded request carried, and a few names give fixed errors.

use std::pin::Pin;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::library_pb::library_server::Library;
use crate::library_pb::{
    Book, CreateBookRequest, DeleteBookRequest, GetBookRequest, ListBooksRequest, UpdateBookRequest,
};

/// The service; stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibraryService;

fn echo_request(r: GetBookRequest) -> Result<Book, Status> {
    if r.name.starts_with("shelves/locked/") {
        return Err(Status::permission_denied(format!("shelf of {} is locked", r.name)));
    }
    Ok(Book {
        name: r.name,
        author: r.author,
        pages: r.version,
        available: r.full,
        genre: r.genre,
        tags: r.tags,
        ..Book::default()
    })
}

#[tonic::async_trait]
impl Library for LibraryService {
    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        echo_request(request.into_inner()).map(Response::new)
    }

    async fn get_title(&self, request: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(Book { title: format!("The title of {name}"), name, ..Book::default() }))
    }

    async fn create_book(&self, request: Request<CreateBookRequest>) -> Result<Response<Book>, Status> {
        let r = request.into_inner();
        let mut book = r.book.unwrap_or_default();
        book.name = format!("{}/books/{}", r.parent, r.book_id);
        Ok(Response::new(book))
    }

    async fn update_book(&self, request: Request<UpdateBookRequest>) -> Result<Response<Book>, Status> {
        Ok(Response::new(request.into_inner().book.unwrap_or_default()))
    }

    async fn delete_book(&self, request: Request<DeleteBookRequest>) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        if name.ends_with("/missing") {
            return Err(Status::not_found(format!("no book {name}")));
        }
        Ok(Response::new(()))
    }

    type ListBooksStream = Pin<Box<dyn Stream<Item = Result<Book, Status>> + Send>>;

    async fn list_books(&self, request: Request<ListBooksRequest>) -> Result<Response<Self::ListBooksStream>, Status> {
        let r = request.into_inner();
        let books = (0..r.count.max(0))
            .map(move |i| Ok(Book { name: format!("{}/books/{i}", r.parent), pages: i64::from(i), ..Book::default() }));
        Ok(Response::new(Box::pin(futures_util::stream::iter(books.collect::<Vec<_>>()))))
    }
}
