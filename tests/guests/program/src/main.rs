//! `program [exit CODE] [write FILE TEXT] [read FILE] [ARGS...]`: prints its
//! arguments and its stdin, then does what the arguments say.

use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("args: {:?}", &args[1..]);
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    println!("stdin: {input:?}");
    println!("cwd: {:?}", std::env::current_dir().ok());
    let mut rest = args.iter().skip(1);
    while let Some(word) = rest.next() {
        match word.as_str() {
            "write" => {
                let (Some(file), Some(text)) = (rest.next(), rest.next()) else {
                    break;
                };
                match std::fs::write(file, text) {
                    Ok(()) => println!("wrote {file}"),
                    Err(e) => eprintln!("cannot write {file}: {e}"),
                }
            }
            "read" => {
                let Some(file) = rest.next() else { break };
                match std::fs::read_to_string(file) {
                    Ok(text) => println!("read {file}: {text:?}"),
                    Err(e) => eprintln!("cannot read {file}: {e}"),
                }
            }
            "exit" => {
                let code: u8 = rest.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                exit(code);
            }
            _ => {}
        }
    }
}

fn exit(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    #[cfg(target_arch = "wasm32")]
    wasip2::cli::exit::exit_with_code(code);
    std::process::exit(i32::from(code))
}
